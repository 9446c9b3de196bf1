"""Executes the notebooks with tiny settings, so they cannot rot."""

import json
import os

import matplotlib
import pytest

NOTEBOOK_DIR = os.path.join(os.path.dirname(__file__), os.pardir, 'notebooks')

# The replacement of each notebook's cell tagged "parameters".
TINY_PARAMETERS = {
    'quickstart.ipynb': '''
SIGNAL_DIM, CODE_DIM = 16, 32
NUM_TRAIN, NUM_TEST = 512, 128
LAM = 0.05
NUM_EPOCHS = 2
''',
    'classification.ipynb': '''
NUM_SAMPLES, SIGNAL_DIM, NUM_CLASSES = 240, 8, 3
NOISE = 1.0
CODE_DIM, M = 12, 3
LAM = 1.0
DICTIONARY_STEPS = 2
NUM_EPOCHS = 2
''',
}


def _code_cells(path):
  with open(path) as handle:
    notebook = json.load(handle)
  for cell in notebook['cells']:
    if cell['cell_type'] != 'code':
      continue
    source = ''.join(cell['source'])
    if 'parameters' in cell['metadata'].get('tags', []):
      source = TINY_PARAMETERS[os.path.basename(path)]
    if '%pip' in source:  # The Colab install cell; the package is installed.
      continue
    yield source


def test_every_notebook_has_tiny_parameters():
  notebooks = sorted(name for name in os.listdir(NOTEBOOK_DIR)
                     if name.endswith('.ipynb'))
  assert notebooks and set(notebooks) <= set(TINY_PARAMETERS)


@pytest.mark.parametrize('name', sorted(TINY_PARAMETERS))
def test_notebook_runs(name):
  matplotlib.use('Agg')
  namespace = {}
  for source in _code_cells(os.path.join(NOTEBOOK_DIR, name)):
    exec(compile(source, name, 'exec'), namespace)  # pylint: disable=exec-used
