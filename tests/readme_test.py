"""The front page's API example runs as it stands."""

import os
import re
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)


def python_blocks(path: str) -> list[str]:
  with open(path) as handle:
    return re.findall(r'```python\n(.*?)```', handle.read(), re.DOTALL)


def test_the_api_example_runs_and_prints_both_errors():
  (example,) = python_blocks(os.path.join(ROOT, 'README.md'))
  completed = subprocess.run(
      [sys.executable, '-c', example], capture_output=True, text=True,
      timeout=600, cwd=ROOT,
      env=dict(os.environ, JAX_PLATFORMS='cpu',
               PYTHONPATH=os.pathsep.join(
                   [os.path.abspath(ROOT)] +
                   os.environ.get('PYTHONPATH', '').split(os.pathsep))))
  assert completed.returncode == 0, completed.stderr[-3000:]
  lines = completed.stdout.splitlines()
  assert [line.split(':')[0] for line in lines] == [
      'IHT, 10 iterations', 'Deep l0 encoder, 2 stages'], completed.stdout
  assert all(re.fullmatch(r'.*: \d+\.\d %', line) for line in lines)


def markdown_files() -> list[str]:
  paths = [os.path.join(ROOT, 'README.md')]
  for directory, _, files in os.walk(os.path.join(ROOT, 'results')):
    paths += [os.path.join(directory, f) for f in files if f == 'README.md']
  docs = os.path.join(ROOT, 'docs')
  paths += [os.path.join(docs, f) for f in sorted(os.listdir(docs))
            if f.endswith('.md')]
  return paths


def anchors(path: str) -> set[str]:
  """GitHub's heading anchors: lower case, punctuation dropped, - for space."""
  with open(path) as handle:
    headings = re.findall(r'^#+ (.*)$', handle.read(), re.MULTILINE)
  return {re.sub(r'[^\w\- ]', '', heading.lower()).replace(' ', '-')
          for heading in headings}


def test_relative_links_and_images_point_to_existing_files():
  checked = 0
  for path in markdown_files():
    with open(path) as handle:
      text = re.sub(r'```.*?```', '', handle.read(), flags=re.DOTALL)
    for target in re.findall(r'\]\(([^)\s]+)\)', text):
      if re.match(r'[a-z]+:', target):
        continue  # An absolute URL.
      file_part, _, anchor = target.partition('#')
      linked = (os.path.normpath(os.path.join(os.path.dirname(path),
                                              file_part))
                if file_part else path)
      assert os.path.exists(linked), f'{path}: broken link {target}'
      if anchor and linked.endswith('.md'):
        assert anchor in anchors(linked), f'{path}: no anchor {target}'
      checked += 1
  assert checked > 10
