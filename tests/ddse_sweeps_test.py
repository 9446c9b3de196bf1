"""Tests of the DDSE experiment's units and sweeps
(`l0enc.experiments.ddse_sweeps`) on tiny synthetic images: a whole
experiment, its compactness and its reports."""

import dataclasses
import importlib.util
import os

import matplotlib.figure
import numpy as np
import pytest

from l0enc import ddse
from l0enc import train
from l0enc.experiments import configs
from l0enc.experiments import ddse as ddse_unit
from l0enc.experiments import ddse_compactness
from l0enc.experiments import ddse_reports
from l0enc.experiments import ddse_sweeps
from l0enc.experiments import ddse_training
from l0enc.experiments import paper

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)

# 8 x 8 images (n = 64, s = 16), m = 16, 1000 training images in batches of
# 100 (10 steps per epoch): seconds per unit once compiled.
BASE = ddse_unit.Config(
    dataset='synthetic', code_dim=16, num_epochs=2, batch_size=100,
    validation_size=200, num_train=1200, num_test=200, image_size=8,
    num_classes=4, learning_rate=0.05)
# A ts/t sweep keeps every array shape, so its units reuse the compilations.
SWEEPS = {'train_fraction': (0.5, 1.0)}
METHODS = (ddse.FULLY_CONNECTED, ddse.DDSE_MODEL)

@pytest.fixture(scope='module')
def finished(tmp_path_factory):
  """An experiment of two methods and two ts/t points, run to the end."""
  workdir = str(tmp_path_factory.mktemp('ddse_experiment'))
  combined = ddse_sweeps.run_experiment(BASE, SWEEPS, workdir, METHODS,
                                        timing_repeats=1)
  return workdir, combined


def _unit_dir(workdir, config):
  return os.path.join(workdir, 'units', ddse_sweeps.unit_name(config))


def _max_per_row(indices, shape):
  """Largest nonzero count of a row of a BCOO (rows = first index column)."""
  counts = np.zeros(shape[0], int)
  np.add.at(counts, indices[:, 0], 1)
  return counts.max()


def test_plan_shares_units_and_ignores_s_for_baselines():
  sweeps = {'sparsity_ratio': (0.1, 0.25, 0.5), 'num_stages': (1, 2),
            'train_fraction': (0.5, 1.0)}
  planned = ddse_sweeps.plan(dataclasses.replace(BASE, sparsity_ratio=0.25),
                             sweeps, ddse.MODEL_KINDS)
  # Default 6; s/n: 2 new points for V and DDSE; k and ts/t: 1 new point
  # for each of the six methods.
  assert len(planned.units) == 6 + 2 * 2 + 6 + 6
  s_units = planned.sweeps['sparsity_ratio']['units']
  assert s_units[ddse.FULLY_CONNECTED] == [planned.default[
      ddse.FULLY_CONNECTED]] * 3
  assert s_units[ddse.DDSE_MODEL][1] == planned.default[ddse.DDSE_MODEL]
  assert len(set(s_units[ddse.DDSE_MODEL])) == 3
  assert planned.sweeps['num_stages']['values'] == [1, 2]
  for name, config in planned.units.items():
    assert ddse_sweeps.unit_name(config) == name
  with pytest.raises(ValueError, match='Unknown sweep'):
    ddse_sweeps.plan(BASE, {'batch_size': (64,)})
  with pytest.raises(ValueError, match='methods'):
    ddse_sweeps.plan(BASE, {}, ('ddse', 'resnet'))
  with pytest.raises(ValueError, match='train_fraction'):
    ddse_sweeps.plan(BASE, {'train_fraction': (0.5, 2.0)})


def test_run_trains_writes_results_and_satisfies_constraints(finished):
  workdir, combined = finished
  config = dataclasses.replace(BASE, method=ddse.DDSE_MODEL)
  unit_dir = _unit_dir(workdir, config)
  results = combined['units'][ddse_sweeps.unit_name(config)]
  assert os.path.exists(os.path.join(unit_dir, ddse_unit.RESULTS_FILE))
  assert [r['epoch'] for r in results['history']] == [1, 2]
  assert results['history'][1]['train_loss'] < results['history'][0][
      'train_loss']
  assert 0 <= results['test_error'] < 50  # 4 classes: chance is 75%.
  assert results['max_nonzeros'] == {
      'input_weights': 16, 'synthesis_weights': 16, 'analysis_weights': 16}
  # The sparse export itself: every W1 / W3 row and W2 column has <= s.
  export = os.path.join(unit_dir, ddse_compactness.SPARSE_EXPORT_FILE)
  with np.load(export) as npz:
    assert _max_per_row(npz['input_weights_indices'], (16, 64)) <= 16
    for stage in range(BASE.num_stages):
      assert _max_per_row(npz['analysis_weights_indices'][stage],
                          (16, 64)) <= 16
      # W2 is (n, m), constrained per column: count the column index.
      assert _max_per_row(npz['synthesis_weights_indices'][stage][:, ::-1],
                          (16, 64)) <= 16
  # The model rebuilt from the checkpoint is the one that was evaluated.
  restored = ddse_training.restore_final_model(config, unit_dir)
  unit = ddse_unit.prepare_data(config)
  evaluation = train.evaluate(
      restored, unit.x_test, unit.y_test, loss_fn=ddse_training.softmax_loss,
      metric_fn=ddse_training.error_metric)
  assert evaluation.metrics['error'] == results['test_error']
  np.testing.assert_allclose(evaluation.loss, results['test_loss'], rtol=1e-5)
  compactness = combined['compactness']
  assert compactness['test_error'] == results['test_error']
  assert compactness['nonzero_weights'] <= compactness['ddse_bound'] == (
      5 * 16 * 16)
  assert compactness['lista_weights'] == 16 * 64 + 2 * 16 * 16
  assert compactness['max_feature_difference'] < 1e-3
  assert compactness['sparse_seconds'] > 0 < compactness['dense_seconds']


def test_second_call_returns_cached_results(finished, monkeypatch):
  workdir, combined = finished

  def no_training(*args, **kwargs):
    raise AssertionError('a finished unit must not train again')

  monkeypatch.setattr(ddse_training, 'train_model', no_training)
  monkeypatch.setattr(ddse_compactness, 'compactness', no_training)
  again = ddse_sweeps.run_experiment(BASE, SWEEPS, workdir, METHODS)
  assert again['units'] == combined['units']
  assert again['compactness'] == combined['compactness']
  # --report_only: the finished units, read back without the data.
  monkeypatch.setattr(ddse_unit, 'load_images', no_training)
  reported = ddse_sweeps.run_experiment(BASE, SWEEPS, workdir, METHODS,
                                        report_only=True)
  assert reported['units'] == combined['units']
  assert reported['compactness'] == combined['compactness']
  with pytest.raises(ValueError, match='another configuration'):
    config = dataclasses.replace(BASE, method=ddse.DDSE_MODEL)
    ddse_training.run(dataclasses.replace(config, seed=1),
                      _unit_dir(workdir, config))


def test_shards_split_the_units_and_a_last_run_gathers_them(
    finished, tmp_path, monkeypatch):
  _, combined = finished
  workdir = str(tmp_path)
  shards = [ddse_sweeps.run_experiment(BASE, SWEEPS, workdir, METHODS,
                                       timing_repeats=1, shard_index=index,
                                      num_shards=2)
            for index in range(2)]
  names = [set(shard['units']) for shard in shards]
  assert not names[0] & names[1]
  assert names[0] | names[1] == set(combined['units'])
  # Only the shard that ran the default DDSE measures its compactness.
  assert [shard['compactness'] is not None for shard in shards].count(
      True) == 1

  def no_training(*args, **kwargs):
    raise AssertionError('a finished unit must not train again')

  monkeypatch.setattr(ddse_training, 'train_model', no_training)
  monkeypatch.setattr(ddse_compactness, 'compactness', no_training)
  gathered = ddse_sweeps.run_experiment(BASE, SWEEPS, workdir, METHODS)
  assert set(gathered['units']) == set(combined['units'])
  for name, unit in gathered['units'].items():
    assert unit['test_error'] == combined['units'][name]['test_error']
  assert gathered['compactness'] is not None
  with pytest.raises(ValueError, match='shard_index'):
    ddse_sweeps.run_experiment(BASE, SWEEPS, workdir, METHODS, shard_index=2,
                               num_shards=2)


def test_reports_tables_and_figures(finished):
  _, combined = finished
  table = ddse_reports.default_table(combined)
  assert 'I: fully connected' in table and '| DDSE |' in table
  sweep = ddse_reports.sweep_table(combined, 'train_fraction')
  assert 'ts/t = 0.5' in sweep and 'ts/t = 1' in sweep
  ddse_row = next(line for line in sweep.splitlines() if '| DDSE |' in line)
  default_error = combined['units'][combined['default']['ddse']]['test_error']
  assert ddse_row.split('|')[-2].strip() == f'{default_error:.2f}'
  caption = ddse_reports.budget_caption(combined, 'test', 'Tiny.')
  assert '2 epoch(s)' in caption and 'Tiny.' in caption
  text = ddse_reports.report(combined, caption)
  assert 'Compactness' in text and 'ts/t' in text
  figure = ddse_reports.sweep_figure(combined, 'train_fraction', caption)
  assert isinstance(figure, matplotlib.figure.Figure)
  assert len(figure.axes[0].lines) == len(METHODS)


def _config_file(preset):
  path = os.path.join(ROOT, 'experiments', 'configs', f'ddse_{preset}.py')
  spec = importlib.util.spec_from_file_location(f'ddse_{preset}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


@pytest.mark.parametrize('preset, num_units, code_dim, num_epochs', [
    ('quick', 40, 256, 3), ('paper', 120, 1024, 40), ('synthetic', 4, 32, 2)])
def test_config_files_give_the_presets(preset, num_units, code_dim,
                                       num_epochs):
  settings = configs.to_settings(ddse_sweeps.Settings, _config_file(preset),
                                 data_dir='data')
  assert settings.preset == preset
  base = settings.base
  assert (base.code_dim, base.num_epochs, base.data_dir) == (
      code_dim, num_epochs, 'data')
  planned = ddse_sweeps.plan(base, settings.sweeps_to_run, settings.methods)
  assert len(planned.units) == num_units
  if preset == 'paper':
    assert settings.sweeps_to_run == paper.DDSE_SWEEP_VALUES


def test_settings_check_every_unit_and_the_sweeps():
  config = _config_file('quick')
  settings = configs.to_settings(ddse_sweeps.Settings, config)
  assert settings.base.max_rotation_degrees == 10
  config.augment = False
  assert configs.to_settings(ddse_sweeps.Settings,
                             config).base.augment_config.is_identity
  for field, value, match in [
      ('momentum', 1.0, 'momentum'),
      ('sweeps', ('batch_size',), 'sweeps'),
      ('methods', ('ddse', 'resnet'), 'methods'),
      ('sweep_values.code_dim', (128, 0), 'code_dim')]:
    bad = _config_file('quick')
    if '.' in field:
      bad.sweep_values[field.split('.')[1]] = value
    else:
      bad[field] = value
    with pytest.raises(ValueError, match=match):
      configs.to_settings(ddse_sweeps.Settings, bad)
