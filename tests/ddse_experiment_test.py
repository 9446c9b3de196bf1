"""Tests of the DDSE classification experiment on tiny synthetic images."""

import dataclasses
import os
import shutil

import chex
import matplotlib.figure
import numpy as np
import pytest

from l0enc import ddse
from l0enc.experiments import ddse as experiment

# 8 x 8 images (n = 64, s = 16), m = 16, 1000 training images in batches of
# 100 (10 steps per epoch): seconds per unit once compiled.
BASE = experiment.Config(
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
  combined = experiment.run_experiment(BASE, SWEEPS, workdir, METHODS,
                                      timing_repeats=1)
  return workdir, combined


def _unit_dir(workdir, config):
  return os.path.join(workdir, 'units', experiment.unit_name(config))


def _max_per_row(indices, shape):
  """Largest nonzero count of a row of a BCOO (rows = first index column)."""
  counts = np.zeros(shape[0], int)
  np.add.at(counts, indices[:, 0], 1)
  return counts.max()


def test_class_proportional_subset_keeps_proportions():
  rng = np.random.default_rng(0)
  labels = rng.permutation(np.repeat([0, 1, 2, 7], [500, 300, 150, 50]))
  for fraction in (0.02, 0.1, 0.5, 1.0):
    subset = experiment.class_proportional_subset(labels, fraction, seed=3)
    assert len(np.unique(subset)) == len(subset)
    assert np.all(np.diff(subset) > 0)
    counts = np.bincount(labels[subset], minlength=8)[[0, 1, 2, 7]]
    np.testing.assert_array_equal(
        counts, [max(1, round(fraction * n)) for n in (500, 300, 150, 50)])
  again = experiment.class_proportional_subset(labels, 0.1, seed=3)
  other = experiment.class_proportional_subset(labels, 0.1, seed=4)
  np.testing.assert_array_equal(again, experiment.class_proportional_subset(
      labels, 0.1, seed=3))
  assert not np.array_equal(again, other)


@pytest.mark.parametrize('fraction', [0.0, -0.5, 1.5])
def test_class_proportional_subset_rejects_bad_fractions(fraction):
  with pytest.raises(ValueError, match='fraction'):
    experiment.class_proportional_subset(np.arange(10) % 2, fraction, seed=0)


def test_plateau_learning_rates():
  errors = [5.0, 4.0, 4.5, 4.2, 3.0, 3.1, 3.2, 3.3, 3.4]
  rates = experiment.plateau_learning_rates(errors, initial=1.0, factor=0.1,
                                            patience=2)
  assert len(rates) == len(errors) + 1
  # Stalls after 4.0 (two epochs) and after 3.0 (two, then two more).
  np.testing.assert_allclose(rates, [1, 1, 1, 1, 0.1, 0.1, 0.1, 0.01, 0.01,
                                     0.001])
  capped = experiment.plateau_learning_rates(errors, initial=1.0, factor=0.1,
                                             patience=2, max_decays=1)
  assert min(capped) == 0.1
  strict = experiment.plateau_learning_rates([5.0, 4.9, 4.8], initial=1.0,
                                             factor=0.5, patience=1,
                                             min_improvement=0.5)
  np.testing.assert_allclose(strict, [1, 1, 0.5, 0.25])


@pytest.mark.parametrize('kwargs,match', [
    (dict(sparsity_ratio=1.5), r'sparsity s .* must be in \[1, n = 64\]'),
    (dict(sparsity_ratio=0.001), r'sparsity s'),
    (dict(method='lista'), 'method must be one of'),
    (dict(train_fraction=0.0), r'train_fraction .* \(0, 1\]'),
    (dict(train_fraction=1.01), r'train_fraction .* \(0, 1\]'),
    (dict(dataset='cifar'), 'dataset'),
    (dict(validation_size=1200), 'validation_size'),
    (dict(momentum=1.0), 'momentum'),
    (dict(learning_rate=-0.1), 'learning_rate'),
    (dict(max_rotation_degrees=60), 'at most 45'),
])
def test_config_validation(kwargs, match):
  with pytest.raises(ValueError, match=match):
    dataclasses.replace(BASE, **kwargs)


def test_config_properties():
  assert (BASE.signal_dim, BASE.sparsity, BASE.classes) == (64, 16, 4)
  mnist = experiment.Config()
  assert (mnist.signal_dim, mnist.sparsity, mnist.code_dim,
          mnist.num_stages) == (784, 196, 1024, 2)
  assert mnist.initial_learning_rate == experiment.DEFAULT_LEARNING_RATES[
      ddse.DDSE_MODEL]
  assert set(experiment.DEFAULT_LEARNING_RATES) == set(ddse.MODEL_KINDS)


def test_plan_shares_units_and_ignores_s_for_baselines():
  sweeps = {'sparsity_ratio': (0.1, 0.25, 0.5), 'num_stages': (1, 2),
            'train_fraction': (0.5, 1.0)}
  planned = experiment.plan(dataclasses.replace(BASE, sparsity_ratio=0.25),
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
    assert experiment.unit_name(config) == name
  with pytest.raises(ValueError, match='Unknown sweep'):
    experiment.plan(BASE, {'batch_size': (64,)})
  with pytest.raises(ValueError, match='methods'):
    experiment.plan(BASE, {}, ('ddse', 'resnet'))
  with pytest.raises(ValueError, match='train_fraction'):
    experiment.plan(BASE, {'train_fraction': (0.5, 2.0)})


def test_prepare_data_subsamples_and_repeats():
  config = dataclasses.replace(BASE, train_fraction=0.2)
  unit = experiment.prepare_data(config)
  assert unit.num_full_train == 1000
  assert len(unit.train_images) == pytest.approx(200, abs=4)
  # Repeated about t / ts = 5 times: an epoch as long as a full one.
  assert len(unit.epoch_indices) == 5 * len(unit.train_images)
  np.testing.assert_array_equal(np.bincount(unit.epoch_indices), 5)
  chex.assert_shape([unit.x_validation, unit.x_test], (None, 64))
  once = experiment.prepare_data(dataclasses.replace(config,
                                                     repeat_subset=False))
  assert len(once.epoch_indices) == len(once.train_images)


def test_run_trains_writes_results_and_satisfies_constraints(finished):
  workdir, combined = finished
  config = dataclasses.replace(BASE, method=ddse.DDSE_MODEL)
  unit_dir = _unit_dir(workdir, config)
  results = combined['units'][experiment.unit_name(config)]
  assert os.path.exists(os.path.join(unit_dir, experiment.RESULTS_FILE))
  assert [r['epoch'] for r in results['history']] == [1, 2]
  assert results['history'][1]['train_loss'] < results['history'][0][
      'train_loss']
  assert 0 <= results['test_error'] < 50  # 4 classes: chance is 75%.
  assert results['max_nonzeros'] == {
      'input_weights': 16, 'synthesis_weights': 16, 'analysis_weights': 16}
  # The sparse export itself: every W1 / W3 row and W2 column has <= s.
  with np.load(os.path.join(unit_dir, experiment.SPARSE_EXPORT_FILE)) as npz:
    assert _max_per_row(npz['input_weights_indices'], (16, 64)) <= 16
    for stage in range(BASE.num_stages):
      assert _max_per_row(npz['analysis_weights_indices'][stage],
                          (16, 64)) <= 16
      # W2 is (n, m), constrained per column: count the column index.
      assert _max_per_row(npz['synthesis_weights_indices'][stage][:, ::-1],
                          (16, 64)) <= 16
  # The model rebuilt from the checkpoint is the one that was evaluated.
  restored = experiment.restore_final_model(config, unit_dir)
  unit = experiment.prepare_data(config)
  evaluation = experiment.train.evaluate(
      restored, unit.x_test, unit.y_test, loss_fn=experiment.softmax_loss,
      metric_fn=experiment.error_metric)
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

  monkeypatch.setattr(experiment, 'train_model', no_training)
  monkeypatch.setattr(experiment, 'compactness', no_training)
  again = experiment.run_experiment(BASE, SWEEPS, workdir, METHODS)
  assert again['units'] == combined['units']
  assert again['compactness'] == combined['compactness']
  with pytest.raises(ValueError, match='another configuration'):
    config = dataclasses.replace(BASE, method=ddse.DDSE_MODEL)
    experiment.run(dataclasses.replace(config, seed=1),
                   _unit_dir(workdir, config))


def test_shards_split_the_units_and_a_last_run_gathers_them(
    finished, tmp_path, monkeypatch):
  _, combined = finished
  workdir = str(tmp_path)
  shards = [experiment.run_experiment(BASE, SWEEPS, workdir, METHODS,
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

  monkeypatch.setattr(experiment, 'train_model', no_training)
  monkeypatch.setattr(experiment, 'compactness', no_training)
  gathered = experiment.run_experiment(BASE, SWEEPS, workdir, METHODS)
  assert set(gathered['units']) == set(combined['units'])
  for name, unit in gathered['units'].items():
    assert unit['test_error'] == combined['units'][name]['test_error']
  assert gathered['compactness'] is not None
  with pytest.raises(ValueError, match='shard_index'):
    experiment.run_experiment(BASE, SWEEPS, workdir, METHODS, shard_index=2,
                              num_shards=2)


def test_diverged_first_epoch_restarts_at_a_smaller_rate(tmp_path):
  config = dataclasses.replace(BASE, method=ddse.FULLY_CONNECTED)
  # At 100 the first epoch's loss overflows; the retry at 10 does not.
  retried = experiment.run(dataclasses.replace(config, learning_rate=100.0),
                           str(tmp_path / 'retried'))
  direct = experiment.run(dataclasses.replace(config, learning_rate=10.0),
                          str(tmp_path / 'direct'))
  assert retried['diverged_epochs'] == [0] and direct['diverged_epochs'] == []
  assert [r['learning_rate'] for r in retried['history']] == [10.0, 10.0]
  np.testing.assert_allclose(
      [r['train_loss'] for r in retried['history']],
      [r['train_loss'] for r in direct['history']], rtol=1e-6)
  assert retried['test_error'] == direct['test_error']
  with pytest.raises(FloatingPointError, match='diverged 4 times'):
    experiment.run(dataclasses.replace(config, learning_rate=1e6,
                                       num_epochs=1), str(tmp_path / 'never'))


def test_diverged_later_epoch_is_undone_and_retried(tmp_path, monkeypatch):
  config = dataclasses.replace(BASE, method=ddse.FULLY_CONNECTED,
                               num_epochs=3)
  fit = experiment.train.fit
  poisoned = []

  def fit_that_diverges_once_in_epoch_2(*args, config, **kwargs):
    result = fit(*args, config=config, **kwargs)
    if config.num_epochs == 2 and not poisoned:
      poisoned.append(True)
      last = result.history[-1]._replace(train_loss=float('nan'))
      result = result._replace(history=result.history[:-1] + [last])
    return result

  monkeypatch.setattr(experiment.train, 'fit',
                      fit_that_diverges_once_in_epoch_2)
  results = experiment.run(config, str(tmp_path))
  assert poisoned and results['diverged_epochs'] == [1]
  assert [r['epoch'] for r in results['history']] == [1, 2, 3]
  rate = config.learning_rate
  np.testing.assert_allclose([r['learning_rate'] for r in results['history']],
                             [rate, rate / 10, rate / 10])
  assert np.isfinite([r['train_loss'] for r in results['history']]).all()
  # Epoch 2 was trained again at the smaller rate, epoch 1 kept.
  monkeypatch.setattr(experiment.train, 'fit', fit)
  clean = experiment.run(config, str(tmp_path / 'clean'))['history']
  assert results['history'][0]['train_loss'] == clean[0]['train_loss']
  assert results['history'][1]['train_loss'] != pytest.approx(
      clean[1]['train_loss'], rel=1e-3)


def test_interrupted_unit_resumes_to_the_same_model(finished, tmp_path):
  workdir, combined = finished
  config = dataclasses.replace(BASE, method=ddse.DDSE_MODEL)
  expected = combined['units'][experiment.unit_name(config)]
  # A run killed after its first epoch: its checkpoint, no results.json.
  unit_dir = str(tmp_path / 'unit')
  experiment.run(dataclasses.replace(config, num_epochs=1), unit_dir)
  os.remove(os.path.join(unit_dir, experiment.RESULTS_FILE))
  resumed = experiment.run(config, unit_dir)
  for key in ('epoch', 'step', 'learning_rate'):
    assert ([r[key] for r in resumed['history']] ==
            [r[key] for r in expected['history']])
  np.testing.assert_allclose(
      [r['train_loss'] for r in resumed['history']],
      [r['train_loss'] for r in expected['history']], rtol=1e-5)
  np.testing.assert_allclose(resumed['test_loss'], expected['test_loss'],
                             rtol=1e-5)
  assert resumed['test_error'] == expected['test_error']
  # Without results.json, a finished unit restores its last checkpoint.
  shutil.copytree(_unit_dir(workdir, config), tmp_path / 'copy')
  os.remove(tmp_path / 'copy' / experiment.RESULTS_FILE)
  restored = experiment.run(config, str(tmp_path / 'copy'))
  assert restored['test_error'] == expected['test_error']


def test_reports_tables_and_figures(finished):
  _, combined = finished
  table = experiment.default_table(combined)
  assert 'I: fully connected' in table and '| DDSE |' in table
  sweep = experiment.sweep_table(combined, 'train_fraction')
  assert 'ts/t = 0.5' in sweep and 'ts/t = 1' in sweep
  ddse_row = next(line for line in sweep.splitlines() if '| DDSE |' in line)
  default_error = combined['units'][combined['default']['ddse']]['test_error']
  assert ddse_row.split('|')[-2].strip() == f'{default_error:.2f}'
  caption = experiment.budget_caption(combined, 'test', 'Tiny.')
  assert '2 epoch(s)' in caption and 'Tiny.' in caption
  text = experiment.report(combined, caption)
  assert 'Compactness' in text and 'ts/t' in text
  figure = experiment.sweep_figure(combined, 'train_fraction', caption)
  assert isinstance(figure, matplotlib.figure.Figure)
  assert len(figure.axes[0].lines) == len(METHODS)


def _combined_with_errors(errors_by_sweep):
  """A `run_experiment`-shaped dict holding only test errors."""
  units, sweeps = {}, {}
  for sweep, (values, errors) in errors_by_sweep.items():
    names = {}
    for method, method_errors in errors.items():
      names[method] = []
      for value, error in zip(values, method_errors):
        name = f'{method}_{sweep}_{value}'
        units[name] = {'test_error': error}
        names[method].append(name)
    sweeps[sweep] = {'values': list(values), 'units': names}
  return {'methods': list(ddse.MODEL_KINDS), 'sweeps': sweeps,
          'units': units}


@pytest.mark.parametrize('ddse_wins', [True, False])
def test_paper_claims_follow_the_errors(ddse_wins):
  others = {method: [2.0, 2.5, 3.0] for method in ddse.MODEL_KINDS}
  ddse_errors = [1.0, 0.5, 1.2] if ddse_wins else [2.1, 2.6, 3.1]
  errors = others | {ddse.DDSE_MODEL: ddse_errors}
  combined = _combined_with_errors({
      'sparsity_ratio': ((0.1, 0.25, 0.5), errors),
      'num_stages': ((1, 2, 3), errors)})
  claims = {(c.figure, c.claim): c for c in experiment.paper_claims(combined)}
  best_s = claims['Fig. 3', 'DDSE has the lowest error of the six methods '
                  'at every s/n']
  assert best_s.holds == ddse_wins
  assert best_s.ours.startswith(f'best at {3 if ddse_wins else 0} of 3')
  assert claims['Fig. 3', "DDSE's best s/n is about 0.25"].holds == ddse_wins
  assert claims['Fig. 6', 'DDSE has the lowest error at every k'].holds == (
      ddse_wins)
  # Only the sweeps that ran are checked.
  assert {figure for figure, _ in claims} == {'Fig. 3', 'Fig. 6'}
  table = experiment.claims_table(list(claims.values()))
  assert table.count('| yes |' if ddse_wins else '| no |') >= 3
