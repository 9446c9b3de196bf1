r"""Copies results tables written by the experiments into the READMEs.

Every block between

    <!-- BEGIN results/some/results.md -->
    <!-- END results/some/results.md -->

in README.md (the front page), in each results/<experiment>/README.md and in
docs/*.md is replaced by the current content of the file it names (relative
to the repository root, wherever the README lies), so the numbers in them are
always the scripts' own output:

    python experiments/summary.py        # results/summary.md, for the front page
    python experiments/update_readme.py
"""

import glob
import os
import re

from absl import app

from l0enc import reporting

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
BLOCK = re.compile(r'(<!-- BEGIN (\S+) -->\n).*?(<!-- END \2 -->)', re.DOTALL)


def readme_paths(root: str) -> list[str]:
  """The Markdown files that may hold include blocks, front page first."""
  front_page = os.path.join(root, 'README.md')
  others = sorted(
      glob.glob(os.path.join(root, 'results', '**', 'README.md'),
                recursive=True) +
      glob.glob(os.path.join(root, 'docs', '*.md')))
  return ([front_page] if os.path.exists(front_page) else []) + others


def refresh(path: str, root: str) -> int:
  """Refills the include blocks of one Markdown file, atomically.

  Args:
    path: the Markdown file.
    root: the repository root, against which included paths are read.

  Returns:
    The number of blocks refilled.

  Raises:
    ValueError: a block names a file that does not exist.
  """
  with open(path) as handle:
    text = handle.read()

  def include(match):
    included = os.path.join(root, match.group(2))
    if not os.path.exists(included):
      raise ValueError(f'{path} includes {match.group(2)}, which does not '
                       f'exist under {root}; run the script that writes it, '
                       'or remove the block.')
    with open(included) as handle:
      return match.group(1) + handle.read().rstrip('\n') + '\n' + match.group(3)

  updated, count = BLOCK.subn(include, text)
  if updated != text:  # Unchanged files keep their timestamps.
    reporting.write_text_atomic(path, updated)
  return count


def refresh_all(root: str) -> dict[str, int]:
  """`refresh` on every file of `readme_paths`; `{path: blocks refilled}`."""
  return {path: refresh(path, root) for path in readme_paths(root)}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  root = os.path.normpath(ROOT)
  for path, count in refresh_all(root).items():
    print(f'Refreshed {count} block(s) of {os.path.relpath(path, root)}.')


if __name__ == '__main__':
  app.run(main)
