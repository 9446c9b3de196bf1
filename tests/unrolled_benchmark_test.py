"""experiments/unrolled_benchmark.py end to end, with tiny settings."""

import importlib.util
import json
import os
import runpy
import subprocess
import sys

import numpy as np
import pytest

from l0enc.experiments import configs

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
SCRIPT = os.path.join(ROOT, 'experiments', 'unrolled_benchmark.py')
TINY = ['--config.signal_dim=10', '--config.code_dim=20',
        '--config.num_stages=2', '--config.num_test=30',
        '--config.num_validation=20', '--config.steps_per_epoch=2',
        '--config.max_epochs=2', '--config.patience=1',
        '--config.batch_size=8', '--config.fista_max_iterations=50',
        '--config.max_m=4', '--config.m_growth=2', '--settings=noiseless',
        '--config.refine_decays=()']


def _load_script():
  spec = importlib.util.spec_from_file_location('unrolled_benchmark', SCRIPT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


benchmark = _load_script()


def _settings(**overrides):
  config = runpy.run_path(os.path.join(
      ROOT, 'experiments', 'configs', 'unrolled_benchmark_quick.py'))[
          'get_config']()
  return configs.to_settings(benchmark.Settings, config, **overrides)


@pytest.mark.parametrize('cap_percent, bins, counts', [
    (40.0, ((1, 2), (3, 4), (5, 10)), [1, 1, 1]),
    (10.0, ((1, 2), (3, 10)), [1, 2]),  # A cap below the expected count.
])
def test_code_error_sources_against_hand_computed_values(cap_percent, bins,
                                                         counts):
  settings = _settings(code_dim=10, nonzero_prob=0.2,
                       max_support_percent=cap_percent)
  assert benchmark.nonzero_bins(settings) == bins
  codes = np.zeros((4, 10), np.float32)
  codes[0, :1] = 2.0  # 1 nonzero
  codes[1, :3] = 1.0  # 3
  codes[2, :5] = -1.0  # 5; codes[3] is all zero: left out.
  error = np.zeros_like(codes)
  error[0, 5] = 0.2
  error[1, 9] = 0.1
  error[2, 7] = 1.0
  error[3, 0] = 5.0
  # The all-zero code is in no group.
  assert benchmark.code_counts(codes, settings) == {'codes': counts,
                                                    'most_nonzeros': 5}
  sources = benchmark.code_error_sources(codes + error, codes, settings)
  squared = np.array([0.04, 0.01, 1.0])
  energy = np.array([4.0, 3.0, 5.0])
  nonzeros = np.array([1, 3, 5])
  per_code = 10 * np.log10(squared / energy)
  np.testing.assert_allclose(sources['test_code_nmse_db']['worst'],
                             per_code.max(), rtol=1e-5)
  np.testing.assert_allclose(sources['test_code_nmse_db']['median'],
                             np.median(per_code), rtol=1e-5)
  assert sources['worst_code']['nonzeros'] == 5
  np.testing.assert_allclose(sources['worst_code']['error_share'],
                             1.0 / squared.sum(), rtol=1e-5)
  for group, (low, high) in zip(sources['test_nmse_db_by_nonzeros'], bins):
    members = (nonzeros >= low) & (nonzeros <= high)
    assert group['nonzeros'] == [low, high]
    assert group['codes'] == members.sum()
    np.testing.assert_allclose(group['nmse_db'], 10 * np.log10(
        squared[members].sum() / energy[members].sum()), rtol=1e-5)


def test_worst_code_stages_against_hand_computed_values():
  codes = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [0.0, 0.0]],
                   np.float32)
  stages = np.stack([codes + 0.1, codes + 0.1, codes])
  # Code 2 (energy 2): squared error 0.02, then 1.0, then 2.0.
  stages[1, 2] = codes[2] + [1.0, 0.0]
  stages[2, 2] = codes[2] + [np.sqrt(2.0), 0.0]
  stages[2, 0, 1] = 0.1  # Code 0: 0.01 at stage 3; code 1 exact.
  stages[2, 3] = 10.0  # The all-zero code 3 is left out.
  curves = benchmark.worst_code_stages(stages, codes)
  np.testing.assert_allclose(curves['worst_code_nmse_db'], 10 * np.log10(
      np.array([0.02, 1.0, 2.0]) / 2.0), rtol=1e-5, atol=1e-5)
  # Codes 0 and 1 (energies 1 and 4).
  np.testing.assert_allclose(curves['others_nmse_db'], 10 * np.log10(
      np.array([0.04, 0.04, 0.01]) / 5.0), rtol=1e-5)


@pytest.mark.parametrize('variant', [
    dict(), dict(new_stage_init='previous_stage', restore_best=True,
                 relative_steps=True)])
def test_our_variants_reach_the_stagewise_config(variant):
  config = _settings(**variant).stagewise_config()
  defaults = dict(new_stage_init='as_built', restore_best=False,
                  relative_steps=False)
  for name, value in {**defaults, **variant}.items():
    assert getattr(config, name) == value, name


@pytest.mark.parametrize('end_to_end_max_epochs, expected', [(None, 3),
                                                              (40, 40)])
def test_end_to_end_phases_take_their_own_cap(end_to_end_max_epochs,
                                              expected):
  settings = _settings(end_to_end_max_epochs=end_to_end_max_epochs,
                       end_to_end_rate=0.003)
  config = benchmark.end_to_end_config(settings)
  assert config.max_epochs == expected
  assert config.learning_rate == 0.003 and config.relative_steps
  assert set(config.phase_sigmas) == {settings.stagewise_config(
  ).phase_sigmas[-1]}
  assert settings.stagewise_config().max_epochs == 3  # Stage-wise unchanged.


@pytest.mark.parametrize('restore_best, end_to_end_restore_best, expected', [
    (False, None, False), (True, None, True), (False, True, True),
    (True, False, False)])
def test_end_to_end_phases_take_their_own_restore_best(
    restore_best, end_to_end_restore_best, expected):
  settings = _settings(restore_best=restore_best,
                       end_to_end_restore_best=end_to_end_restore_best)
  assert benchmark.end_to_end_config(settings).restore_best == expected
  assert settings.stagewise_config().restore_best == restore_best


def test_bad_settings_are_named():
  with pytest.raises(ValueError, match='max_support_percent'):
    _settings(max_support_percent=120.0)
  with pytest.raises(ValueError, match='end_to_end_max_epochs'):
    _settings(end_to_end_max_epochs=0)
  with pytest.raises(ValueError, match='end_to_end_restore_best'):
    _settings(end_to_end_restore_best='yes')


def _run(tmp_path, *extra):
  completed = subprocess.run(
      [sys.executable, SCRIPT, *TINY, f'--workdir={tmp_path / "work"}',
       f'--output_dir={tmp_path / "out"}', *extra],
      capture_output=True, text=True, timeout=600, cwd=ROOT,
      env=dict(os.environ, JAX_PLATFORMS='cpu',
               PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH',
                                                             '')))
  assert completed.returncode == 0, completed.stderr[-3000:]
  return completed


def test_tiny_run_writes_every_output_and_resumes(tmp_path):
  # alista_msparse_e2e alone: its base method runs first.
  _run(tmp_path, '--methods=ista,fista_converged,alista_msparse_e2e')
  out = tmp_path / 'out'
  assert sorted(os.listdir(out)) == [
      'README.md', 'nmse_per_stage.png', 'results.json', 'results.md',
      'training_curves.png']
  results = json.loads((out / 'results.json').read_text())
  rows = results['settings']['noiseless']
  assert set(rows) == {'ista', 'fista_converged', 'alista_msparse',
                       'alista_msparse_e2e'}
  for row in rows.values():
    assert len(row['test_nmse_db']) == 2
  assert rows['alista_msparse']['steps'] > 0
  # No refinement rates (--config.refine_decays=()): one phase per stage.
  assert [p['name'] for p in rows['alista_msparse']['phases']] == [
      'stage_01_new', 'stage_02_new']
  # The fine-tuned variant continues from the base's trained encoder and
  # stream position, with end-to-end phases only.
  tuned = rows['alista_msparse_e2e']
  assert [p['name'] for p in tuned['phases']] == ['end_to_end_0']
  assert tuned['base_steps'] == rows['alista_msparse']['steps']
  assert tuned['untrained_test_nmse_db'] == rows['alista_msparse'][
      'test_nmse_db']
  spread = rows['alista_msparse']['test_code_nmse_db']
  assert spread['median'] <= spread['p99'] <= spread['worst']
  # The headline, a ratio of sums, lies within the per-code spread's range.
  assert rows['alista_msparse']['test_nmse_db'][-1] <= spread['worst']
  assert np.isfinite(rows['alista_msparse']['phases'][-1]['final_eval_nmse_db'])
  # The nonzero-count groups partition the test codes with a nonzero entry.
  groups = rows['alista_msparse']['test_nmse_db_by_nonzeros']
  bounds = [g['nonzeros'] for g in groups]
  assert bounds[0][0] == 1 and bounds[-1][1] == 20
  assert all(low <= high for low, high in bounds)
  assert all(a[1] + 1 == b[0] for a, b in zip(bounds, bounds[1:]))
  assert 0 < sum(g['codes'] for g in groups) <= 30
  stages = rows['alista_msparse']['worst_code_stages']
  assert len(stages['worst_code_nmse_db']) == len(stages['others_nmse_db']) == 2
  for row in rows.values():
    assert 0 < row['worst_code']['error_share'] <= 1
    assert [g['nonzeros'] for g in row['test_nmse_db_by_nonzeros']] == bounds
  readme = (out / 'README.md').read_text()
  assert 'Deep M-sparse, ALISTA form' in readme and 'target -60 dB' in readme
  assert 'Deep M-sparse, ALISTA form + end to end (ours)' in readme
  assert 'before the end-to-end phases' in readme
  assert 'per test code: median' in readme
  assert 'at its best stage' in readme and 'the other codes' in readme
  assert 'Where the error comes from' in readme and 'nonzeros (' in readme
  for split, size in (('validation', 20), ('test', 30)):
    counts = results['code_counts']['noiseless'][split]
    assert len(counts['codes']) == len(bounds)
    assert sum(counts['codes']) <= size
    assert 1 <= counts['most_nonzeros'] <= 20
  assert 'Codes per group, validation: ' in readme
  # Finished units are read back, not trained again.
  again = _run(tmp_path, '--methods=ista,fista_converged,alista_msparse_e2e')
  assert 'alista_msparse: read back' in again.stderr
  assert 'alista_msparse_e2e: read back' in again.stderr
  assert json.loads((out / 'results.json').read_text())['settings'] == (
      results['settings'])
  # A unit finished before the last-stage metrics were recorded gets them
  # from its last phase's checkpoint when read back.
  done = tmp_path / 'work' / 'noiseless' / 'alista_msparse' / 'result.json'
  old = json.loads(done.read_text())
  for key in ('test_code_nmse_db', 'worst_code', 'test_nmse_db_by_nonzeros'):
    del old[key]
  done.write_text(json.dumps(old))
  # --report_only trains nothing and reports the finished units only (and
  # reads the one above back with its metrics).
  report = _run(tmp_path, '--methods=ista,alista,alista_msparse',
                '--settings=noiseless,40', '--report_only')
  upgraded = json.loads(done.read_text())
  np.testing.assert_allclose(
      [upgraded['test_code_nmse_db'][k] for k in ('median', 'p99', 'worst')],
      [spread[k] for k in ('median', 'p99', 'worst')], rtol=1e-5)
  assert upgraded['test_nmse_db_by_nonzeros'] == groups
  assert 'noiseless / alista: not finished, left out' in report.stderr
  assert 'snr_40db / ista: not finished, left out' in report.stderr
  reported = json.loads((out / 'results.json').read_text())['settings']
  assert set(reported) == {'noiseless'}
  assert set(reported['noiseless']) == {'ista', 'alista_msparse'}


def test_unknown_method_is_a_usage_error(tmp_path):
  completed = subprocess.run(
      [sys.executable, SCRIPT, '--methods=lasso', f'--workdir={tmp_path}'],
      capture_output=True, text=True, timeout=300, cwd=ROOT,
      env=dict(os.environ, JAX_PLATFORMS='cpu',
               PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH',
                                                             '')))
  assert completed.returncode != 0
  assert 'Unknown method' in completed.stderr
