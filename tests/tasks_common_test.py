"""Tests of l0enc.experiments.tasks_common, what both task experiments share."""

import dataclasses
import glob
import json
import os

import numpy as np
import pytest

from l0enc import validation
from l0enc.experiments import classification
from l0enc.experiments import clustering
from l0enc.experiments import tasks_common
import task_runs

TINY = task_runs.TINY
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
COMMITTED = sorted(os.path.dirname(path) for path in glob.glob(os.path.join(
    ROOT, 'results', 'c*', '*', 'settings.json')))


@pytest.fixture(name='classification_run')
def fixture_classification_run():
  return task_runs.classification_run()


def test_settings_written_before_a_field_existed_match_its_default(
    classification_run, tmp_path):
  config, workdir, _ = classification_run
  path = os.path.join(workdir, 'settings.json')
  with open(path) as handle:
    settings = json.load(handle)
  del settings['spatial_window']  # As written before the field existed.
  older = tmp_path / 'older'
  older.mkdir()
  (older / 'settings.json').write_text(json.dumps(settings))
  tasks_common.check_settings(config, str(older))
  with pytest.raises(ValueError, match='other settings'):
    tasks_common.check_settings(dataclasses.replace(config, spatial_window=3),
                       str(older))


@pytest.mark.parametrize('scale', [1.0, 5.0])
def test_deep_l0_starts_from_the_lista_threshold(scale):
  config = classification.ClassificationConfig(**TINY)
  dictionary = scale * np.random.default_rng(0).normal(size=(6, 8))
  lista = tasks_common.build_encoder(config, dictionary, 'lista')
  deep_l0 = tasks_common.build_encoder(config, dictionary, 'l0')
  np.testing.assert_allclose(deep_l0.threshold[...], lista.threshold[...],
                             rtol=1e-5)
  explicit = dataclasses.replace(config, l0_lam=0.3)
  assert explicit.l0_weight(step_size=0.01) == 0.3


@pytest.mark.parametrize('encoder', list(tasks_common.L0_VARIANTS))
def test_deep_l0_variants_start_as_the_papers_encoder_or_sparser(encoder):
  config = classification.ClassificationConfig(
      encoders=('l0', encoder), **TINY)
  rng = np.random.default_rng(0)
  dictionary, x = rng.normal(size=(6, 8)), rng.normal(size=(50, 6))
  paper = tasks_common.build_encoder(config, dictionary, 'l0')
  ours = tasks_common.build_encoder(config, dictionary, encoder)
  paper.eval()
  ours.eval()
  np.testing.assert_allclose(ours.threshold[...], paper.threshold[...])
  if encoder == 'l0_floor':
    # At most half of the entries pass the floor sqrt(2) RMS(u).
    nonzeros = np.count_nonzero(np.asarray(ours(x)), axis=1)
    assert np.all(nonzeros <= 8 / tasks_common.L0_FLOOR**2)
  else:
    np.testing.assert_allclose(ours(x), paper(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('num_stages', [1, 2, 3])
def test_fully_connected_reference_has_the_encoders_layer_sizes(num_stages):
  config = classification.ClassificationConfig(
      encoders=('fc',), num_stages=num_stages, **TINY)
  model = tasks_common.build_encoder(config, np.ones((6, 8)), 'fc')
  kernels = [layer.kernel[...].shape
             for layer in [*model.hidden_layers, model.output_layer]]
  assert kernels == [(6, 8)] + [(8, 8)] * (num_stages - 1)
  codes = np.asarray(model(np.random.default_rng(0).normal(size=(5, 6))))
  assert codes.shape == (5, 8) and np.all(codes >= 0)
  assert tasks_common.row_name('fc') == 'Fully connected ReLU (reference)'


def test_stratified_split_and_standardization():
  labels = np.array([0] * 10 + [1] * 5 + [2] * 1)
  kept, held_out = tasks_common.stratified_split(labels, 0.2, seed=0)
  assert np.bincount(labels[held_out], minlength=3).tolist() == [2, 1, 0]
  assert sorted(np.concatenate([kept, held_out]).tolist()) == list(range(16))
  x = np.random.default_rng(0).normal(size=(4, 3, 3)) * 5 + 2
  standardized = tasks_common.standardize_rows(x)
  assert standardized.shape == (4, 9)
  np.testing.assert_allclose(standardized.mean(1), 0, atol=1e-6)
  np.testing.assert_allclose(standardized.std(1), 1, rtol=1e-5)
  with pytest.raises(ValueError, match='constant'):
    tasks_common.standardize_rows(np.ones((2, 4)))


def test_a_damaged_cache_names_the_file(tmp_path):
  path = str(tmp_path / 'codes.npz')
  compute = lambda: {'codes': np.arange(6.0).reshape(2, 3)}
  first = tasks_common.cached_arrays(path, compute)
  np.testing.assert_array_equal(
      tasks_common.cached_arrays(path, compute)['codes'],
      first['codes'])
  with open(path, 'r+b') as handle:
    handle.truncate(40)
  with pytest.raises(validation.DamagedFileError,
                     match='codes.npz is damaged.*delete it and rerun'):
    tasks_common.cached_arrays(path, compute)


@pytest.mark.parametrize('workdir', COMMITTED,
                         ids=[os.path.relpath(path, ROOT) for path in COMMITTED])
def test_committed_results_read_back(workdir):
  """Every committed unit is read back as it is, nothing recomputed."""
  with open(os.path.join(workdir, 'settings.json')) as handle:
    settings = json.load(handle)
  cls = {'ClassificationConfig': classification.ClassificationConfig,
         'ClusteringConfig': clustering.ClusteringConfig}[
             settings.pop('experiment')]
  config = cls(**{name: tuple(value) if isinstance(value, list) else value
                  for name, value in settings.items()})
  tasks_common.check_settings(config, workdir)  # Raises on other settings.
  paths = glob.glob(os.path.join(workdir, '*', tasks_common.UNIT_RESULTS_FILE))
  assert paths
  for path in paths:
    with open(path) as handle:
      saved = json.load(handle)
    unit = tasks_common.Unit(**saved['unit'])
    assert unit.name == os.path.basename(os.path.dirname(path))

    def recompute(unit_dir):
      raise AssertionError(f'{unit_dir} was recomputed.')

    assert tasks_common.run_task_unit(workdir, unit, recompute) == saved

