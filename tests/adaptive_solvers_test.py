"""Tests of l0enc.adaptive_solvers (normalized IHT, OMP) against references."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import linear_model

from l0enc import adaptive_solvers
from l0enc import solvers
from references import make_problem, np_top_m


@pytest.fixture(autouse=True)
def _enable_x64():
  with jax.enable_x64(True):
    yield


def np_omp(x, dictionary, m):
  """Textbook OMP with a fresh least-squares fit at every step."""
  codes = np.zeros((x.shape[0], dictionary.shape[1]))
  for i, signal in enumerate(x):
    support, residual = [], signal.copy()
    for _ in range(m):
      scores = np.abs(dictionary.T @ residual) / np.linalg.norm(dictionary, axis=0)
      scores[support] = -1
      support.append(int(np.argmax(scores)))
      coef, *_ = np.linalg.lstsq(dictionary[:, support], signal, rcond=None)
      residual = signal - dictionary[:, support] @ coef
    codes[i, support] = coef
  return codes


@pytest.mark.parametrize('m', [1, 4, 10])
def test_omp_matches_numpy_reference(m):
  x, dictionary = make_problem(noise=0.1)
  result = adaptive_solvers.omp(x, dictionary, m)
  np.testing.assert_allclose(
      result.codes, np_omp(np.asarray(x), np.asarray(dictionary), m),
      atol=1e-8)
  np.testing.assert_array_equal(np.count_nonzero(result.codes, axis=1), m)


def test_omp_handles_non_unit_atoms_and_leading_shapes():
  x, dictionary = make_problem(num_signals=12)
  scaled = dictionary * jnp.linspace(0.5, 2.0, dictionary.shape[1])
  result = adaptive_solvers.omp(x.reshape(3, 4, -1), scaled, 3)
  chex.assert_shape(result.codes, (3, 4, 40))
  np.testing.assert_allclose(
      result.codes.reshape(12, -1),
      np_omp(np.asarray(x), np.asarray(scaled), 3), atol=1e-8)


def test_omp_rejects_bad_arguments():
  x, dictionary = make_problem()
  with pytest.raises(ValueError, match='m'):
    adaptive_solvers.omp(x, dictionary, 21)


def np_niht_step(codes, x, dictionary, lam=None, m=None, shrink=2.0, c=0.01):
  """Blumensath and Davies (2010), Algorithm 2, one signal at a time."""
  new_codes, steps = np.zeros_like(codes), np.zeros(len(codes))
  for i, (a, signal) in enumerate(zip(codes, x)):
    g = dictionary.T @ (signal - dictionary @ a)
    if np.any(a):
      support = a != 0
    elif m is not None:
      support = np_top_m(g[None], m)[0] != 0
    else:
      support = np.ones_like(a, bool)
    g_s = np.where(support, g, 0)
    denominator = np.sum((dictionary @ g_s) ** 2)
    mu = (np.sum(g_s ** 2) / denominator if denominator > 0 else
          1 / np.linalg.norm(dictionary, 2) ** 2)
    for _ in range(100):
      u = a + mu * g
      new = (np_top_m(u[None], m)[0] if m is not None else
             np.where(np.abs(u) >= np.sqrt(2 * lam * mu), u, 0))
      change = new - a
      energy = np.sum((dictionary @ change) ** 2)
      if (np.array_equal(new != 0, support) or energy == 0 or
          mu <= (1 - c) * np.sum(change ** 2) / energy):
        break
      mu /= shrink * (1 - c)
    new_codes[i], steps[i] = new, mu
  return new_codes, steps


@pytest.mark.parametrize('problem', [{'lam': 0.02}, {'m': 4}])
@pytest.mark.parametrize('scale', [1.0, 5.0])
def test_normalized_iht_step_matches_numpy(problem, scale):
  x, dictionary = make_problem(noise=0.05)
  dictionary = dictionary * scale
  codes = np.zeros((40, 40))
  for _ in range(4):  # From zero, then from the codes reached.
    lam = problem.get('lam')
    got, step = adaptive_solvers.normalized_iht_step(
        jnp.asarray(codes), x, dictionary, m=problem.get('m'),
        lam=None if lam is None else jnp.asarray(lam))
    want, want_step = np_niht_step(codes, np.asarray(x),
                                   np.asarray(dictionary), **problem)
    chex.assert_trees_all_close(got, want, atol=1e-10)
    chex.assert_trees_all_close(step[:, 0], want_step, rtol=1e-10)
    codes = want


@pytest.mark.parametrize('problem', [{'lam': 0.02}, {'m': 4}])
def test_normalized_iht_objective_never_increases(problem):
  # An ill-conditioned, badly scaled dictionary: where fixed-step IHT would
  # need mu = 1 / ||D||^2 to be safe, normalized IHT needs no step at all.
  x, dictionary = make_problem(noise=0.05)
  dictionary = dictionary * jnp.linspace(0.2, 4.0, 40)
  # One iteration at a time from the previous codes: one compilation.
  codes, objectives = jnp.zeros((x.shape[0], dictionary.shape[1])), []
  for _ in range(24):
    result = adaptive_solvers.normalized_iht(
        x, dictionary, num_iterations=1, init=codes, **problem)
    codes = result.codes
    objectives.append(result.objective)
  increase = np.diff(np.stack(objectives), axis=0)
  assert increase.max() <= 1e-10 * np.abs(np.stack(objectives)).max()


@pytest.mark.parametrize('problem', [{'lam': 0.02}, {'m': 4}])
def test_normalized_iht_is_scale_invariant(problem):
  # || x - (c D) b ||: the codes of c D are those of D divided by c, with the
  # same l0 weight, because the step scales as 1 / c^2.
  x, dictionary = make_problem(noise=0.05)
  codes = adaptive_solvers.normalized_iht(x, dictionary, num_iterations=15,
                                          **problem).codes
  scaled = adaptive_solvers.normalized_iht(x, 3.0 * dictionary,
                                           num_iterations=15, **problem).codes
  chex.assert_trees_all_close(3.0 * scaled, codes, atol=1e-9)


def easy_problem(num_signals=40, n=60, p=80, sparsity=3, seed=0):
  """Noiseless signals of 3-sparse codes with magnitudes in [1, 2]."""
  rng = np.random.default_rng(seed)
  dictionary = rng.normal(size=(n, p))
  dictionary /= np.linalg.norm(dictionary, axis=0)
  codes = np.zeros((num_signals, p))
  for row in codes:
    row[rng.choice(p, sparsity, replace=False)] = (
        rng.choice([-1, 1], sparsity) * rng.uniform(1, 2, sparsity))
  return jnp.asarray(codes @ dictionary.T), jnp.asarray(dictionary), codes


@pytest.mark.parametrize('problem', [{'lam': 0.01}, {'m': 3}])
def test_normalized_iht_and_iht_share_fixed_points(problem):
  x, dictionary, codes = easy_problem()
  # The generating codes are a fixed point of both iterations...
  for solver in (solvers.iht, adaptive_solvers.normalized_iht):
    again = solver(x, dictionary, num_iterations=5, init=jnp.asarray(codes),
                   **problem).codes
    chex.assert_trees_all_close(again, codes, atol=1e-10)
  # ...and normalized IHT converges to it from zero, in far fewer
  # iterations than the 200 or so that IHT needs here.
  normalized = adaptive_solvers.normalized_iht(
      x, dictionary, num_iterations=100, tol=1e-12, **problem)
  chex.assert_trees_all_close(normalized.codes, codes, atol=1e-8)
  assert normalized.num_iterations.max() < 100


def test_normalized_iht_recovers_omp_supports():
  # On the easy problem both recover the generating supports, so they agree
  # with scikit-learn's OMP.
  x, dictionary, _ = easy_problem()
  codes = adaptive_solvers.normalized_iht(x, dictionary, m=3,
                                          num_iterations=100,
                                          tol=1e-12).codes
  omp = linear_model.OrthogonalMatchingPursuit(n_nonzero_coefs=3,
                                               fit_intercept=False)
  reference = omp.fit(np.asarray(dictionary), np.asarray(x).T).coef_
  np.testing.assert_array_equal(np.asarray(codes) != 0, reference != 0)


@pytest.mark.parametrize('bad, message', [
    (dict(lam=0.1, m=2), 'exactly one'),
    (dict(lam=-0.1), 'lam'),
    (dict(m=0), 'm'),
    (dict(m=2, max_backtracks=-1), 'max_backtracks'),
    (dict(m=2, num_iterations=0), 'num_iterations'),
])
def test_normalized_iht_rejects_bad_arguments(bad, message):
  x, dictionary = make_problem()
  with pytest.raises(ValueError, match=message):
    adaptive_solvers.normalized_iht(x, dictionary, **bad)
