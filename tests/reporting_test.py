"""Tests of the results-file helpers."""

import json
import os

import pytest

from l0enc import reporting


@pytest.mark.parametrize('results', [{'error': 1.5, 'rows': [1, 2]}, [0.25]])
def test_write_results_writes_both_files_and_creates_the_directory(
    tmp_path, results):
  directory = tmp_path / 'new' / 'experiment'
  reporting.write_results(str(directory), results, '| a |\n| --- |\n')
  assert json.loads((directory / 'results.json').read_text()) == results
  assert (directory / 'results.md').read_text() == '| a |\n| --- |\n'
  # Atomic writes leave no temporary file behind.
  assert sorted(os.listdir(directory)) == ['results.json', 'results.md']
