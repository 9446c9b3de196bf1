"""`l0enc.experiments.iht_start`, its script and `iht_curve(init=...)` on a
tiny problem."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from l0enc import reporting
from l0enc import solvers
from l0enc.experiments import approximation
from l0enc.experiments import iht_start

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
SCRIPT = os.path.join(ROOT, 'experiments', 'iht_start.py')

CONFIG = approximation.Config(code_dim=128, lam=0.05, iht_iterations=(2, 5))


def _write_setting(directory, config=CONFIG, num_signals=12, signal_dim=32):
  """A finished setting as experiments/approximation.py leaves it."""
  keys = jax.random.split(jax.random.key(0), 2)
  dictionary = np.asarray(jax.random.normal(keys[0], (signal_dim,
                                                      config.code_dim)))
  dictionary = dictionary / np.linalg.norm(dictionary, axis=0)
  x = np.asarray(jax.random.normal(keys[1], (num_signals, signal_dim)))
  codes = np.asarray(solvers.optimal_codes(x, dictionary, lam=config.lam,
                                           tol=config.codes_tol).codes)
  os.makedirs(directory)
  np.savez(os.path.join(directory, 'problem.npz'), dictionary=dictionary,
           x_train=x, codes_train=codes, x_test=x, codes_test=codes)
  reporting.write_json_atomic(os.path.join(directory, 'results.json'),
                              {'config': approximation.config_to_json(config)})
  return x, dictionary, codes


def test_curves_equal_iht_run_from_each_start(tmp_path):
  x, dictionary, codes = _write_setting(str(tmp_path / 'l0_p128'))
  curves = iht_start.setting_curves(str(tmp_path / 'l0_p128'))
  warm = solvers.fista(x, dictionary, np.sqrt(2 * CONFIG.lam),
                       num_iterations=CONFIG.codes_max_iterations,
                       tol=CONFIG.codes_tol).codes
  for start, init in (('zero', None), ('l1', warm)):
    for k in (1, 5):
      direct = solvers.iht(x, dictionary, lam=CONFIG.lam, num_iterations=k,
                           init=init).codes
      np.testing.assert_allclose(
          curves[start][k - 1]['prediction_error'],
          approximation.code_metrics(direct, codes)['prediction_error'],
          rtol=1e-4, atol=1e-6)
  # The optimal codes are IHT run to convergence from the l1 solution, so
  # from there IHT only gets closer; the l1 solution itself is not optimal.
  errors = [point['prediction_error'] for point in curves['l1']]
  assert errors[-1] <= curves['l1_start']['prediction_error']


def test_iht_curve_from_a_fixed_point_stays_there(tmp_path):
  x, dictionary, codes = _write_setting(str(tmp_path / 'l0_p128'))
  curve = approximation.iht_curve(x, dictionary, codes, CONFIG, 3,
                                  init=codes)
  for point in curve:
    assert point['prediction_error'] == pytest.approx(0.0, abs=1e-6)


def test_script_writes_its_report(tmp_path):
  _write_setting(str(tmp_path / 'work' / 'l0_p128'))
  out = tmp_path / 'out'
  completed = subprocess.run(
      [sys.executable, SCRIPT, f'--workdir={tmp_path / "work"}',
       f'--output_dir={out}', '--problems=l0', '--p=128'],
      capture_output=True, text=True, cwd=ROOT, check=False)
  assert completed.returncode == 0, completed.stderr
  assert sorted(os.listdir(out)) == ['README.md', 'results.json',
                                     'results.md']
  results = json.loads((out / 'results.json').read_text())
  assert len(results['settings']['l0']['128']['zero']) == 5
  readme = (out / 'README.md').read_text()
  assert '17.52' in readme  # The paper's 2-iteration row at p = 128.
  assert 'Below the paper' in readme


def test_missing_run_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match='problem.npz'):
    iht_start.setting_curves(str(tmp_path / 'l0_p128'))
