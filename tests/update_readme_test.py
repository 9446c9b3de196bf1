"""experiments/update_readme.py refills the include blocks of every README."""

import importlib.util
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)


def load_script():
  spec = importlib.util.spec_from_file_location(
      'update_readme', os.path.join(ROOT, 'experiments', 'update_readme.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


update_readme = load_script()


def block(name: str, body: str) -> str:
  return f'<!-- BEGIN {name} -->\n{body}<!-- END {name} -->'


def write(path, text: str) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text)


@pytest.fixture
def repository(tmp_path):
  """A tiny tree: two results files, the front page and a results README."""
  write(tmp_path / 'results' / 'a' / 'results.md', '| new a |\n\n')
  write(tmp_path / 'results' / 'summary.md', 'new summary\n')
  write(tmp_path / 'README.md',
        'Front page.\n' + block('results/summary.md', 'old\n') + '\nEnd.\n')
  write(tmp_path / 'results' / 'a' / 'README.md',
        '# A\n' + block('results/a/results.md', 'stale\nlines\n') + '\n'
        'between\n' + block('results/summary.md', '') + '\n')
  write(tmp_path / 'docs' / 'notes.md', 'No blocks here.\n')
  return tmp_path


def test_finds_the_front_page_first_then_results_and_docs(repository):
  paths = [os.path.relpath(path, repository)
           for path in update_readme.readme_paths(str(repository))]
  assert paths == ['README.md', os.path.join('docs', 'notes.md'),
                   os.path.join('results', 'a', 'README.md')]


def test_refills_every_block_of_every_readme(repository):
  counts = update_readme.refresh_all(str(repository))
  assert {os.path.relpath(path, repository): count
          for path, count in counts.items()} == {
              'README.md': 1, os.path.join('docs', 'notes.md'): 0,
              os.path.join('results', 'a', 'README.md'): 2}
  assert (repository / 'README.md').read_text() == (
      'Front page.\n' + block('results/summary.md', 'new summary\n') +
      '\nEnd.\n')
  # Included paths are relative to the root, not to the README; trailing
  # blank lines of the included file are dropped.
  assert (repository / 'results' / 'a' / 'README.md').read_text() == (
      '# A\n' + block('results/a/results.md', '| new a |\n') + '\nbetween\n'
      + block('results/summary.md', 'new summary\n') + '\n')


def test_is_idempotent_and_leaves_unchanged_files_alone(repository):
  update_readme.refresh_all(str(repository))
  first = {path: open(path).read()
           for path in update_readme.readme_paths(str(repository))}
  times = {path: os.stat(path).st_mtime_ns for path in first}
  update_readme.refresh_all(str(repository))
  for path, text in first.items():
    assert open(path).read() == text
    assert os.stat(path).st_mtime_ns == times[path]


def test_a_missing_included_file_is_a_clear_error(repository):
  write(repository / 'results' / 'b' / 'README.md',
        block('results/b/results.md', ''))
  with pytest.raises(ValueError, match='results/b/results.md'):
    update_readme.refresh_all(str(repository))


def test_the_repository_readmes_are_up_to_date():
  # Every include block of the committed READMEs holds its file's content,
  # so the tables in them are the scripts' own output.
  for path in update_readme.readme_paths(ROOT):
    with open(path) as handle:
      text = handle.read()
    for match in update_readme.BLOCK.finditer(text):
      with open(os.path.join(ROOT, match.group(2))) as handle:
        included = handle.read().rstrip('\n') + '\n'
      assert match.group(0) == (match.group(1) + included + match.group(3)), (
          f'{path}: block {match.group(2)} is stale; run '
          'experiments/update_readme.py')
