"""Bad input that spans modules: dtypes, traced values under jit, files.

One parameterized test per kind of bad input, over every public entry point
it reaches (solvers, metrics, dictionary learning, results files). The
module-specific cases are in the modules' own tests: ops_test (NaN through
the neurons, thresholds and sigma under jit, top_m on 0-d arrays,
max_m_unpool indices), models_test (encoders on NaN rows, integer and zero
dictionaries), tasks_test (labels of the cross entropy), data_test (MNIST
units, damaged data files), train_test (non-finite data and losses, data
fingerprints, damaged checkpoints) and experiments_test (flags).
"""

import re

import jax
from jax.experimental import checkify
import jax.numpy as jnp
import numpy as np
import pytest

from l0enc import adaptive_solvers
from l0enc import dictionary as dictionary_lib
from l0enc import metrics
from l0enc import reporting
from l0enc import solvers
from l0enc import validation

SIGNAL_DIM, CODE_DIM, LAM, M = 8, 16, 0.05, 3


def _dictionary():
  atoms = np.random.default_rng(0).normal(size=(SIGNAL_DIM, CODE_DIM))
  return (atoms / np.linalg.norm(atoms, axis=0)).astype(np.float32)


def _signals(num=5):
  return np.random.default_rng(1).normal(size=(num, SIGNAL_DIM)).astype(
      np.float32)


def _max_step():
  return 1 / float(np.linalg.norm(_dictionary(), ord=2)**2)


# ------------------------------------------------------- values under jit

_JITTED = {
    # name: (function of the traced value, good value, bad value, message)
    'iht_lam': (lambda v: solvers.iht(_signals(), _dictionary(), lam=v,
                                      num_iterations=5).codes,
                LAM, -1.0, 'lam must be positive'),
    'iht_lam_nan': (lambda v: solvers.iht(_signals(), _dictionary(), lam=v,
                                          num_iterations=5).codes,
                    LAM, np.nan, 'lam must be positive'),
    'ista_lam': (lambda v: solvers.ista(_signals(), _dictionary(), v,
                                        num_iterations=5).codes,
                 LAM, -1.0, 'lam must be positive'),
    'fista_lam_tol': (lambda v: solvers.fista(_signals(), _dictionary(), v,
                                              num_iterations=50,
                                              tol=1e-4).codes,
                      LAM, -1.0, 'lam must be positive'),
    'iht_step_above_1_over_lipschitz': (
        lambda v: solvers.iht(_signals(), _dictionary(), lam=LAM,
                              step_size=v, num_iterations=5).codes,
        0.5 * _max_step(), 1.5 * _max_step(),
        r'step_size must be positive and at most 1/\|\|D\|\|_2\^2'),
    'msparse_iht_negative_step': (
        lambda v: solvers.iht(_signals(), _dictionary(), m=M, step_size=v,
                              num_iterations=5).codes,
        0.5 * _max_step(), -0.1, 'step_size must be positive'),
    'iht_step_function': (
        lambda v: solvers.iht_step(jnp.zeros((5, CODE_DIM)), _signals(),
                                   _dictionary(), v, lam=LAM),
        0.5 * _max_step(), -1.0, 'step_size must be positive'),
}


@pytest.mark.parametrize('name', list(_JITTED))
def test_traced_bad_values_give_nan_and_fail_under_checkify(name):
  fn, good, bad, match = _JITTED[name]
  jitted = jax.jit(fn)
  assert np.all(np.isfinite(jitted(good)))
  # Never plausible codes: every code the bad value reaches is NaN.
  assert np.all(np.isnan(jitted(bad)))
  checked = checkify.checkify(jitted, errors=checkify.user_checks)
  assert checked(good)[0].get() is None
  error, _ = checked(bad)
  assert error.get() is not None and re.search(match, error.get())


@pytest.mark.parametrize('solver', ['iht', 'ista', 'omp'])
def test_traced_nan_signals_give_nan_codes_and_fail_under_checkify(solver):
  run = {'iht': lambda x: solvers.iht(x, _dictionary(), lam=LAM,
                                      num_iterations=5).codes,
         'ista': lambda x: solvers.ista(x, _dictionary(), LAM,
                                        num_iterations=5).codes,
         'omp': lambda x: adaptive_solvers.omp(x, _dictionary(), M).codes
        }[solver]
  x = jnp.asarray(_signals()).at[1, 3].set(jnp.nan)
  codes = jax.jit(run)(x)
  # IHT's hard threshold used to turn NaN into plausible zeros.
  assert np.any(np.isnan(codes[1]))
  np.testing.assert_array_equal(np.delete(codes, 1, 0),
                                np.delete(jax.jit(run)(_signals()), 1, 0))
  error, _ = checkify.checkify(jax.jit(run), errors=checkify.user_checks)(x)
  assert 'x holds NaN or infinite entries' in error.get()


# ---------------------------------------------------------------- dtypes

_COMPLEX_CALLS = {
    'iht_x': (lambda c: solvers.iht(c, _dictionary(), lam=LAM), 'x'),
    'iht_dictionary': (lambda c: solvers.iht(
        _signals(), _dictionary().astype(c.dtype), lam=LAM), 'dictionary'),
    'ista_x': (lambda c: solvers.ista(c, _dictionary(), LAM), 'x'),
    'fista_x': (lambda c: solvers.fista(c, _dictionary(), LAM), 'x'),
    'omp_x': (lambda c: adaptive_solvers.omp(c, _dictionary(), M), 'x'),
    'optimal_codes_x': (lambda c: solvers.optimal_codes(c, _dictionary(),
                                                        lam=LAM), 'x'),
    'learn_dictionary': (lambda c: dictionary_lib.learn_dictionary(
        jax.random.key(0), c, CODE_DIM, lam=0.1, num_steps=1), 'signals'),
    'prediction_error': (lambda c: metrics.prediction_error(c, c.real),
                         'predicted'),
    'nmse_db': (lambda c: metrics.nmse_db(c.real, c), 'target'),
    'support_error': (lambda c: metrics.support_error(c, c.real),
                      'predicted'),
    'classification_error': (lambda c: metrics.classification_error(
        c, np.zeros(len(c), int)), 'logits_or_labels'),
}


@pytest.mark.parametrize('name', list(_COMPLEX_CALLS))
def test_complex_inputs_are_refused(name):
  call, argument = _COMPLEX_CALLS[name]
  # The real parts alone would give an objective of the wrong sign.
  values = (_signals() * (1 + 1j)).astype(np.complex64)
  with pytest.raises(ValueError,
                     match=rf'^{argument} (has dtype|must be real).*complex'):
    call(values)


_SOLVER_CALLS = {
    'iht': lambda x, d: solvers.iht(x, d, lam=LAM, num_iterations=20),
    'msparse_iht': lambda x, d: solvers.iht(x, d, m=M, num_iterations=20),
    'ista': lambda x, d: solvers.ista(x, d, LAM, num_iterations=20),
    'fista': lambda x, d: solvers.fista(x, d, LAM, num_iterations=20),
    'omp': lambda x, d: adaptive_solvers.omp(x, d, M),
    'optimal_codes': lambda x, d: solvers.optimal_codes(x, d, m=M,
                                                        max_iterations=50),
}


@pytest.mark.parametrize('solver', list(_SOLVER_CALLS))
@pytest.mark.parametrize('argument', ['x', 'dictionary'])
@pytest.mark.parametrize('form', ['int32', 'list'])
def test_integer_arrays_and_lists_are_cast_to_float(solver, argument, form):
  x = np.round(4 * _signals()).astype(np.int32)
  dictionary = np.round(3 * _dictionary()).astype(np.int32)
  floats = dict(x=x.astype(np.float32), d=dictionary.astype(np.float32))
  given = dict(floats)
  key = 'x' if argument == 'x' else 'd'
  integers = x if argument == 'x' else dictionary
  given[key] = integers.tolist() if form == 'list' else integers
  call = _SOLVER_CALLS[solver]
  result, reference = call(given['x'], given['d']), call(floats['x'],
                                                          floats['d'])
  assert result.codes.dtype == jnp.float32
  np.testing.assert_array_equal(result.codes, reference.codes)
  np.testing.assert_array_equal(result.objective, reference.objective)


def test_learn_dictionary_casts_integer_signals():
  signals = np.round(4 * np.random.default_rng(2).normal(
      size=(64, SIGNAL_DIM))).astype(np.int32)
  run = lambda s: dictionary_lib.learn_dictionary(
      jax.random.key(0), s, CODE_DIM, m=2, num_steps=3, batch_size=16,
      log_every=3).dictionary
  np.testing.assert_array_equal(run(signals), run(signals.astype(np.float32)))


@pytest.mark.parametrize('dtype', [np.float16, jnp.bfloat16])
@pytest.mark.parametrize('solver', ['iht', 'ista', 'omp'])
def test_half_precision_solver_inputs_name_the_accepted_dtypes(dtype, solver):
  call = {'iht': lambda x: solvers.iht(x, _dictionary(), lam=LAM),
          'ista': lambda x: solvers.ista(x, _dictionary(), LAM),
          'omp': lambda x: adaptive_solvers.omp(x, _dictionary(), M)
         }[solver]
  name = jnp.dtype(dtype).name
  with pytest.raises(ValueError, match=f'x has dtype {name}.*accepted dtypes '
                     'are float32, float64'):
    call(jnp.asarray(_signals(), dtype))


@pytest.mark.parametrize('call', [
    lambda d: solvers.iht(_signals(), d, lam=LAM),
    lambda d: solvers.iht(_signals(), d, m=M),
    lambda d: solvers.ista(_signals(), d, LAM),
    lambda d: solvers.fista(_signals(), d, LAM),
    lambda d: solvers.optimal_codes(_signals(), d, lam=LAM),
    lambda d: adaptive_solvers.omp(_signals(), d, M),
])
def test_all_zero_dictionary_is_refused(call):
  with pytest.raises(ValueError, match='dictionary (is all zero|has all-zero '
                     'atoms)'):
    call(np.zeros((SIGNAL_DIM, CODE_DIM), np.float32))


def test_omp_refuses_a_zero_atom():
  dictionary = _dictionary()
  dictionary[:, 5] = 0
  with pytest.raises(ValueError, match=r'all-zero atoms \(columns \[5\]\)'):
    adaptive_solvers.omp(_signals(), dictionary, M)


@pytest.mark.parametrize('call, match', [
    (lambda: solvers.iht_step(jnp.zeros((5, CODE_DIM)), _signals(),
                              _dictionary(), -1.0, lam=LAM), 'step_size'),
    (lambda: solvers.iht_step(jnp.zeros((5, CODE_DIM)), _signals(),
                              _dictionary(), -1.0, m=M), 'step_size'),
    (lambda: solvers.iht_step(jnp.zeros((5, CODE_DIM)), _signals(),
                              _dictionary(), 0.1, lam=-LAM), 'lam'),
    (lambda: solvers.ista_step(jnp.zeros((5, CODE_DIM)), _signals(),
                               _dictionary(), LAM, 0.0), 'step_size'),
    (lambda: solvers.ista_step(jnp.zeros((5, CODE_DIM)), _signals(),
                               _dictionary(), -LAM, 0.1), 'lam'),
])
def test_step_functions_check_their_step_size_like_the_solvers(call, match):
  with pytest.raises(ValueError, match=f'{match} must be positive'):
    call()


# ----------------------------------------------------------------- files


@pytest.mark.parametrize('content', [b'{"epoch": 3, "hist', b'',
                                     b'\xff\xfe\x00'])
def test_damaged_json_names_the_file_and_the_remedy(content, tmp_path):
  path = tmp_path / 'results.json'
  reporting.write_json_atomic(str(path), {'epoch': 3, 'history': [1, 2]})
  assert reporting.read_json(str(path)) == {'epoch': 3, 'history': [1, 2]}
  path.write_bytes(content)
  with pytest.raises(validation.DamagedFileError,
                     match='results.json is damaged') as error:
    reporting.read_json(str(path), remedy='Rerun experiments/foo.py.')
  assert str(path) in str(error.value)
  assert 'Rerun experiments/foo.py.' in str(error.value)
  with pytest.raises(FileNotFoundError):
    reporting.read_json(str(tmp_path / 'absent.json'))
