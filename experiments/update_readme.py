r"""Copies results tables written by the experiments into README.md.

Every block of README.md between

    <!-- BEGIN results/some/results.md -->
    <!-- END results/some/results.md -->

is replaced by the current content of that file, so the README's numbers are
always the scripts' own output:

    python experiments/update_readme.py
"""

import os
import re

from absl import app

from l0enc import reporting

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
BLOCK = re.compile(r'(<!-- BEGIN (\S+) -->\n).*?(<!-- END \2 -->)', re.DOTALL)


def main(argv):
  del argv
  readme_path = os.path.join(ROOT, 'README.md')
  with open(readme_path) as handle:
    readme = handle.read()

  def include(match):
    with open(os.path.join(ROOT, match.group(2))) as handle:
      return match.group(1) + handle.read().rstrip('\n') + '\n' + match.group(3)

  updated, count = BLOCK.subn(include, readme)
  reporting.write_text_atomic(readme_path, updated)
  print(f'Updated {count} block(s) of {readme_path}.')


if __name__ == '__main__':
  app.run(main)
