"""Tests of the code-approximation experiment on a tiny synthetic problem."""

import dataclasses
import os
import re

import numpy as np
import pytest

from l0enc import divergence
from l0enc import train
from l0enc import validation
from l0enc.experiments import approximation
from l0enc.experiments import approximation_reports
from l0enc.experiments import approximation_training
from l0enc.experiments import units

TINY = dict(signal_dim=8, code_dim=16, num_train=640, num_test=64,
            nonzero_prob=0.15, num_epochs=2, baseline_epochs=1, m=3,
            lam=0.02)


@pytest.fixture(scope='module', params=['l0', 'msparse'])
def finished_run(request, tmp_path_factory):
  config = approximation.Config(problem=request.param, **TINY)
  workdir = str(tmp_path_factory.mktemp(request.param))
  return config, workdir, approximation_training.run(config, workdir)


def test_rows_and_files(finished_run):
  config, workdir, results = finished_run
  assert list(results['rows']) == [
      'IHT (2 iterations)', 'IHT (5 iterations)', 'IHT (10 iterations)',
      'Normalized IHT (2 iterations)', 'Normalized IHT (5 iterations)',
      'Normalized IHT (10 iterations)', 'Baseline encoder',
      approximation.DEEP_NAMES[config.problem]]
  for row in results['rows'].values():
    assert np.isfinite(row['prediction_error']) and row['prediction_error'] >= 0
  assert os.path.exists(os.path.join(workdir, 'results.json'))
  assert os.path.exists(os.path.join(workdir, 'problem.npz'))
  assert len(results['history']['deep']) == 2
  assert results['speed']['encoder_seconds'] > 0


def test_untrained_encoder_is_iht_with_as_many_iterations(finished_run):
  config, _, results = finished_run
  # Eq. (8): before training, K stages are K IHT iterations from zero.
  np.testing.assert_allclose(
      results['untrained_deep_encoder']['prediction_error'],
      results['iht_curve'][config.num_stages - 1]['prediction_error'],
      rtol=1e-4, atol=1e-4)


def test_iht_error_decreases_and_msparse_support_error_is_counted(
    finished_run):
  config, _, results = finished_run
  errors = [point['prediction_error'] for point in results['iht_curve']]
  assert errors[-1] < errors[0]
  if config.problem == 'msparse':
    support = results['rows']['IHT (2 iterations)']['support_error']
    assert 0 <= support <= 2 * config.m


def test_a_finished_setting_is_read_back(finished_run):
  config, workdir, results = finished_run
  os.remove(os.path.join(workdir, 'problem.npz'))  # Not needed any more.
  assert approximation_training.run(config, workdir) == results
  with pytest.raises(ValueError, match='another configuration'):
    approximation_training.run(dataclasses.replace(config, seed=1), workdir)


def test_paper_tables_show_the_papers_numbers_only_for_mnist(finished_run):
  _, _, results = finished_run
  synthetic = approximation_reports.paper_tables([results])
  assert 'p = 16' in synthetic
  assert not re.search(r'\d \(\d+\.\d+\)', synthetic)
  mnist = units.as_json(results)
  mnist['config'] = dict(mnist['config'], dataset='mnist', code_dim=128)
  table = approximation_reports.paper_tables([mnist])
  assert '(17.52)' in table or '(17.23)' in table


def test_optimizer_and_rate_are_chosen_on_validation(tmp_path):
  config = approximation.Config(problem='l0', sgd_learning_rates=(1e-2,),
                                adam_learning_rates=(1e-2, 1e-7), **TINY)
  results = approximation_training.run(config, str(tmp_path))
  for name, row in (('deep', approximation.DEEP_NAMES['l0']),
                    ('baseline', 'Baseline encoder')):
    selection = results['learning_rate_selection'][name]
    errors = selection['validation_error']
    assert set(errors) == {'sgd_lr0.01', 'adam_lr0.01', 'adam_lr1e-07'}
    assert approximation_training.candidate_name(
        selection['optimizer'], selection['learning_rate']) == min(
            errors, key=errors.get)
    history = results['history'][name]
    assert history[-1]['eval_metrics']['prediction_error'] == min(
        errors.values())
    # Each optimizer's best candidate, and its test error, are recorded.
    assert selection['by_optimizer']['sgd'] == 'sgd_lr0.01'
    assert selection['by_optimizer']['adam'] == min(
        ('adam_lr0.01', 'adam_lr1e-07'), key=errors.get)
    by_optimizer = results['rows_by_optimizer'][row]
    assert set(by_optimizer) == {'sgd', 'adam'}
    assert results['rows'][row] == by_optimizer[selection['optimizer']]
  table = approximation_reports.optimizer_table([results])
  assert 'sgd_lr0.01' in table and 'yes' in table


def test_results_of_the_older_layout_read_back(finished_run):
  config, workdir, results = finished_run
  old = dict(results['config'], optimizer='adam', learning_rates=[1e-3])
  del old['sgd_learning_rates'], old['adam_learning_rates']
  assert approximation.config_from_json(old) == dataclasses.replace(
      config, data_dir=None)
  assert 'Adam 0.001' in approximation_reports.report(
      [dict(results, config=old)])


def test_trained_encoder_is_timed_again_from_its_checkpoint(finished_run):
  _, workdir, results = finished_run
  speed = approximation_training.benchmark_trained_encoder(workdir)
  assert speed['num_signals'] == results['speed']['num_signals']
  assert speed['encoder_seconds'] > 0 and speed['iht_10_seconds'] > 0
  assert speed['speedup'] == pytest.approx(
      speed['iht_10_seconds'] / speed['encoder_seconds'])
  assert speed['num_train_signals'] == results['data']['num_train'] - int(
      results['data']['num_train'] * 0.1)
  assert speed['deep_epoch_seconds'] > 0
  assert speed['baseline_epoch_seconds'] > 0


def test_plot_writes_a_png(finished_run, tmp_path):
  _, _, results = finished_run
  path = str(tmp_path / 'errors.png')
  approximation_reports.plot([results], path)
  with open(path, 'rb') as handle:
    assert handle.read(8) == b'\x89PNG\r\n\x1a\n'


@pytest.mark.parametrize('override,match', [
    (dict(dataset='cifar'), 'dataset'),
    (dict(problem='l1'), 'problem'),
    (dict(m=200), 'm'),
    (dict(lam=0.0), 'lam'),
    (dict(adam_learning_rates=()), 'at least one rate'),
    (dict(whitening_epsilon=0.1), 'MNIST only'),
    (dict(dataset='mnist', whitening_epsilon=-0.1), 'whitening_epsilon'),
    (dict(tight_frame=True), 'MNIST only'),
    (dict(dataset='mnist', tight_frame=1), 'tight_frame'),
    (dict(validation_fraction=1.0), 'validation_fraction'),
    (dict(num_stages=0), 'num_stages'),
    (dict(adam_learning_rates=(1e-3, -1e-3)), 'adam_learning_rates'),
    (dict(sgd_learning_rates=(0.0,)), 'sgd_learning_rates'),
    (dict(num_epochs=-1), 'num_epochs'),
    (dict(baseline_epochs=0), 'baseline_epochs'),
    (dict(baseline_dropout_rates=()), 'baseline_dropout_rates'),
    (dict(baseline_dropout_rates=(0.1, 1.0)), 'baseline_dropout_rates'),
    (dict(batch_size=0), 'batch_size'),
    (dict(batch_size=600), r'batch_size=600 exceeds the 576'),
    (dict(min_sigma=2.0), r'min_sigma must be in \[0, 0.2\]'),
    (dict(seed=-1), 'seed'),
    (dict(codes_tol=0.0), 'codes_tol'),
    (dict(iht_iterations=(2, 0)), 'iht_iterations'),
])
def test_bad_config_raises_before_any_work(override, match):
  with pytest.raises(ValueError, match=match):
    approximation.Config(**dict(TINY, **override))


def test_a_diverging_candidate_drops_out_of_the_choice(tmp_path):
  config = approximation.Config(problem='msparse', sgd_learning_rates=(1e30,),
                                adam_learning_rates=(1e-3,), **TINY)
  results = approximation_training.run(config, str(tmp_path))
  for name in ('deep', 'baseline'):
    selection = results['learning_rate_selection'][name]
    assert set(selection['diverged']) == {'sgd_lr1e+30'}
    assert selection['optimizer'] == 'adam'
    assert set(selection['validation_error']) == {'adam_lr0.001'}
  with pytest.raises(divergence.DivergedError, match='Every candidate diverged'):
    approximation_training.run(
        dataclasses.replace(config, adam_learning_rates=()),
        str(tmp_path / 'all'))


@pytest.mark.parametrize('problem', ['l0', 'msparse'])
def test_untied_deep_encoder_starts_as_the_tied_one(problem):
  config = approximation.Config(problem=problem, **TINY)
  dictionary = np.random.default_rng(0).normal(size=(8, 16)) / 3
  x = np.random.default_rng(1).normal(size=(32, 8)).astype(np.float32)
  tied = approximation.build_deep_encoder(dictionary, config)
  untied = approximation.build_deep_encoder(
      dictionary, dataclasses.replace(config, tied=False))
  assert tied.tied and not untied.tied
  # Eq. (8) in every stage: both are the same K IHT iterations before
  # training.
  np.testing.assert_allclose(train.predict(untied, x), train.predict(tied, x),
                             rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('rates', [(0.1, 0.1, 0.5), (0.0,), (0.0, 0.0, 0.0)])
def test_baseline_has_one_hidden_layer_per_dropout_rate(rates):
  config = approximation.Config(baseline_dropout_rates=rates, **TINY)
  baseline = approximation.build_baseline_encoder(8, config)
  assert [d.rate for d in baseline.dropouts] == list(rates)
  assert len(baseline.hidden_layers) == len(rates)
  x = np.random.default_rng(1).normal(size=(32, 8)).astype(np.float32)
  # Without dropout, training mode is deterministic and equals eval mode.
  if not any(rates):
    np.testing.assert_allclose(baseline(x), train.predict(baseline, x),
                               rtol=1e-6)


def test_a_damaged_problem_cache_names_the_file(finished_run, tmp_path):
  config, workdir, _ = finished_run
  damaged = tmp_path / 'damaged'
  damaged.mkdir()
  (damaged / 'problem.npz').write_bytes(b'PK\x03\x04 truncated')
  with pytest.raises(validation.DamagedFileError,
                     match='problem.npz is damaged.*Delete it and rerun'):
    approximation.prepare_problem(config, str(damaged))


def test_experiment_settings_cover_every_problem_and_p():
  config = dict(TINY, problems=('msparse', 'l0'), code_dims=(16, 32))
  del config['code_dim']
  experiment, settings = approximation.experiment_settings(
      config, data_dir='/data')
  assert experiment == approximation.Experiment(problems=('msparse', 'l0'),
                                                code_dims=(16, 32))
  assert settings == [
      approximation.Config(**dict(TINY, problem=problem, code_dim=code_dim,
                                  data_dir='/data'))
      for code_dim in (16, 32) for problem in ('msparse', 'l0')]
  _, selected = approximation.experiment_settings(config, code_dims=(32,))
  assert [s.code_dim for s in selected] == [32, 32]


def test_experiment_settings_take_the_calibrated_regime(tmp_path):
  calibration = tmp_path / 'results.json'
  calibration.write_text('{}')
  config = dict(dataset='mnist', problems=('l0',), code_dims=(128, 256),
                calibration=str(calibration))
  regimes = {128: {'whitening_epsilon': 0.1, 'dictionary_lam': 0.5},
             256: {'whitening_epsilon': 0.03, 'dictionary_lam': 1.0}}
  read = []
  _, settings = approximation.experiment_settings(
      config, read_regimes=lambda path: read.append(path) or regimes)
  assert read == [str(calibration)]
  assert [(s.code_dim, s.whitening_epsilon, s.dictionary_lam)
          for s in settings] == [(128, 0.1, 0.5), (256, 0.03, 1.0)]
  with pytest.raises(ValueError, match='no choice for p = 512'):
    approximation.experiment_settings(config, code_dims=(512,),
                                      read_regimes=lambda path: regimes)


@pytest.mark.parametrize('override,match', [
    (dict(problems=('l1',)), 'problems'),
    (dict(problems=()), 'problems'),
    (dict(code_dims=()), 'code_dims'),
    (dict(calibration='/missing.json'), 'calibration'),
    (dict(previous_results='/missing.json'), 'previous_results'),
    (dict(lamda=0.1), 'lamda'),
    (dict(m=200), 'm'),
])
def test_bad_experiment_config_raises_naming_the_field(override, match):
  config = dict(TINY, **override)
  del config['code_dim']
  with pytest.raises(ValueError, match=match):
    approximation.experiment_settings(config)


def test_mnist_tight_frame_is_made_from_the_cached_learned_dictionary(
    tmp_path, monkeypatch):
  # Small stand-in patches (n = 16), so no MNIST is read.
  rng = np.random.default_rng(0)
  patches = tuple(rng.normal(size=(size, 16)).astype(np.float32)
                  for size in (300, 50))
  monkeypatch.setattr(approximation, 'mnist_patches', lambda _: patches)
  config = approximation.Config(dataset='mnist', code_dim=32,
                                whitening_epsilon=0.1, dictionary_steps=3,
                                dictionary_lam=0.5)
  tight = dataclasses.replace(config, tight_frame=True)
  *_, learned = approximation.load_signals(config, str(tmp_path))
  *_, frame = approximation.load_signals(tight, str(tmp_path))
  # One dictionary learning for both: the cache holds the learned one.
  assert os.listdir(tmp_path) == [os.path.basename(
      approximation.dictionary_cache_path(config, str(tmp_path)))]
  np.testing.assert_allclose(np.linalg.norm(frame, axis=0), 1.0, rtol=1e-5)
  np.testing.assert_allclose(np.linalg.svd(frame, compute_uv=False)**2,
                             32 / 16, rtol=1e-2)
  assert np.linalg.norm(learned, 2)**2 > 1.05 * 32 / 16
