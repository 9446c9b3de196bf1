"""Tests of l0enc.solvers against independent references."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import linear_model

from l0enc import solvers
from references import make_problem, np_top_m


@pytest.fixture(autouse=True)
def _enable_x64():
  with jax.enable_x64(True):
    yield


def np_iht(x, dictionary, step, iterations, lam=None, m=None):
  codes = np.zeros((x.shape[0], dictionary.shape[1]))
  for _ in range(iterations):
    u = codes + step * (x - codes @ dictionary.T) @ dictionary
    if m is None:
      codes = np.where(np.abs(u) >= np.sqrt(2 * lam * step), u, 0)
    else:
      codes = np_top_m(u, m)
  return codes


def test_objectives_match_numpy():
  x, dictionary = make_problem()
  codes = jnp.asarray(np.random.default_rng(1).normal(size=(40, 40)) *
                      (np.random.default_rng(2).random((40, 40)) < 0.2))
  residual = np.sum((np.asarray(x) - np.asarray(codes) @ np.asarray(
      dictionary).T)**2, axis=1)
  np.testing.assert_allclose(
      solvers.l1_objective(x, dictionary, codes, 0.3),
      0.5 * residual + 0.3 * np.abs(codes).sum(1))
  np.testing.assert_allclose(
      solvers.l0_objective(x, dictionary, codes, 0.3),
      0.5 * residual + 0.3 * np.count_nonzero(codes, axis=1))
  np.testing.assert_allclose(
      solvers.msparse_objective(x, dictionary, codes), residual)


@pytest.mark.parametrize('lam', [0.05, 0.3])
def test_fista_and_ista_reach_the_sklearn_lasso_optimum(lam):
  x, dictionary = make_problem()
  # sklearn's Lasso minimizes 1/(2 n) ||x - D a||^2 + alpha ||a||_1.
  n = dictionary.shape[0]
  reference = np.stack([
      linear_model.Lasso(alpha=lam / n, fit_intercept=False, tol=1e-12,
                         max_iter=100_000).fit(np.asarray(dictionary),
                                               signal).coef_
      for signal in np.asarray(x)
  ])
  reference_objective = solvers.l1_objective(x, dictionary,
                                             jnp.asarray(reference), lam)
  fast = solvers.fista(x, dictionary, lam, tol=1e-10, num_iterations=20_000)
  slow = solvers.ista(x, dictionary, lam, num_iterations=20_000)
  for result in (fast, slow):
    np.testing.assert_allclose(result.objective, reference_objective,
                               rtol=1e-7)
    np.testing.assert_allclose(result.codes, reference, atol=1e-5)
  # FISTA's acceleration: far fewer iterations than ISTA's fixed budget.
  assert int(fast.num_iterations.max()) < 5_000


def test_per_signal_lam_equals_separate_solves():
  x, dictionary = make_problem(num_signals=6)
  lams = jnp.linspace(0.05, 0.5, 6)
  together = solvers.fista(x, dictionary, lams, num_iterations=300)
  for i in range(6):
    alone = solvers.fista(x[i:i + 1], dictionary, lams[i], num_iterations=300)
    np.testing.assert_allclose(together.codes[i], alone.codes[0], atol=1e-12)
    np.testing.assert_allclose(together.objective[i], alone.objective[0])


@pytest.mark.parametrize('problem', ['l0', 'msparse'])
def test_iht_matches_numpy_reference(problem):
  x, dictionary = make_problem()
  kwargs = {'lam': 0.1} if problem == 'l0' else {'m': 4}
  step = 1 / np.linalg.norm(np.asarray(dictionary), 2)**2
  result = solvers.iht(x, dictionary, num_iterations=7, **kwargs)
  np.testing.assert_allclose(
      result.codes, np_iht(np.asarray(x), np.asarray(dictionary), step, 7,
                           **kwargs), atol=1e-10)
  chex.assert_trees_all_equal(result.num_iterations, jnp.full((40,), 7))


@pytest.mark.parametrize('problem', ['l0', 'msparse'])
@pytest.mark.parametrize('step_scale', [1.0, 0.5])
def test_iht_objective_never_increases(problem, step_scale):
  x, dictionary = make_problem(noise=0.2, seed=3)
  kwargs = {'lam': 0.05} if problem == 'l0' else {'m': 5}
  step = step_scale / float(solvers.lipschitz_constant(dictionary))
  objective = lambda codes: (
      solvers.l0_objective(x, dictionary, codes, kwargs['lam'])
      if problem == 'l0' else solvers.msparse_objective(x, dictionary, codes))
  codes = jnp.zeros((x.shape[0], dictionary.shape[1]))
  previous = objective(codes)
  for _ in range(30):
    codes = solvers.iht(x, dictionary, num_iterations=1, step_size=step,
                        init=codes, **kwargs).codes
    current = objective(codes)
    assert np.all(np.asarray(current) <= np.asarray(previous) + 1e-12)
    previous = current
  if problem == 'msparse':
    assert np.all(np.count_nonzero(codes, axis=1) <= 5)


def test_tolerance_mode_stops_early_and_reports_iterations():
  x, dictionary = make_problem()
  result = solvers.iht(x, dictionary, m=4, tol=1e-8, num_iterations=5000)
  used = np.asarray(result.num_iterations)
  assert used.max() < 5000 and used.min() >= 1
  # Continuing from the result changes nothing.
  again = solvers.iht(x, dictionary, m=4, num_iterations=5,
                      init=result.codes)
  np.testing.assert_allclose(again.codes, result.codes, atol=1e-6)


@pytest.mark.parametrize('problem', ['l0', 'msparse'])
def test_optimal_codes_is_an_iht_fixed_point_not_worse_than_iht_from_zero(
    problem):
  x, dictionary = make_problem(noise=0.05)
  kwargs = {'lam': 0.02} if problem == 'l0' else {'m': 4}
  result = solvers.optimal_codes(x, dictionary, tol=1e-10, **kwargs)
  again = solvers.iht(x, dictionary, num_iterations=3, init=result.codes,
                      **kwargs)
  np.testing.assert_allclose(again.codes, result.codes, atol=1e-8)
  from_zero = solvers.iht(x, dictionary, num_iterations=2000, **kwargs)
  assert np.mean(result.objective) <= np.mean(from_zero.objective) * 1.001


@pytest.mark.parametrize('solver', ['ista', 'fista', 'iht_l0', 'iht_m'])
def test_solvers_under_jit_vmap_and_grad(solver):
  x, dictionary = make_problem(num_signals=5)
  call = {
      'ista': lambda x, d: solvers.ista(x, d, 0.1, num_iterations=20),
      'fista': lambda x, d: solvers.fista(x, d, 0.1, num_iterations=20),
      'iht_l0': lambda x, d: solvers.iht(x, d, lam=0.05, num_iterations=20),
      'iht_m': lambda x, d: solvers.iht(x, d, m=3, num_iterations=20),
  }[solver]
  eager = call(x, dictionary).codes
  np.testing.assert_allclose(jax.jit(call)(x, dictionary).codes, eager,
                             atol=1e-10)
  np.testing.assert_allclose(
      jax.vmap(lambda v: call(v, dictionary).codes)(x), eager, atol=1e-10)
  # A concrete dictionary closed over inside jit is checked eagerly.
  np.testing.assert_allclose(
      jax.jit(lambda v: call(v, dictionary).codes)(x), eager, atol=1e-10)
  grad = jax.grad(lambda v: jnp.sum(call(v, dictionary).codes**2))(x)
  chex.assert_tree_all_finite(grad)
  chex.assert_shape(grad, x.shape)
  assert np.any(np.asarray(grad) != 0)


def test_unrolled_ista_gradient_matches_finite_differences():
  x, dictionary = make_problem(num_signals=2, n=6, p=10)
  f = lambda v: jnp.sum(solvers.fista(v, dictionary, 0.1,
                                      num_iterations=10).codes**2)
  grad = jax.grad(f)(x)
  direction = jnp.asarray(np.random.default_rng(7).normal(size=x.shape))
  eps = 1e-6
  numeric = (f(x + eps * direction) - f(x - eps * direction)) / (2 * eps)
  np.testing.assert_allclose(jnp.sum(grad * direction), numeric, rtol=1e-5)


@pytest.mark.parametrize('call,match', [
    (lambda x, d: solvers.iht(x, d, m=41), 'm'),
    (lambda x, d: solvers.iht(x, d, m=0), 'm'),
    (lambda x, d: solvers.iht(x, d), 'exactly one'),
    (lambda x, d: solvers.iht(x, d, lam=0.1, m=3), 'exactly one'),
    (lambda x, d: solvers.iht(x, d, lam=-0.1), 'lam'),
    (lambda x, d: solvers.fista(x, d, 0.0), 'lam'),
    (lambda x, d: solvers.ista(x, d, 0.1, step_size=0.0), 'step_size'),
    (lambda x, d: solvers.ista(x, d, 0.1, step_size=10.0), r'1/\|\|D'),
    (lambda x, d: solvers.iht(x, d, m=3, step_size=10.0), r'1/\|\|D'),
    (lambda x, d: solvers.fista(x[:, :5], d, 0.1), 'x must have shape'),
    (lambda x, d: solvers.fista(x, d[0], 0.1), 'dictionary'),
    (lambda x, d: solvers.fista(x.at[0, 0].set(jnp.nan), d, 0.1), 'x holds'),
    (lambda x, d: solvers.fista(x, d.at[0, 0].set(jnp.inf), 0.1),
     'dictionary holds'),
    (lambda x, d: solvers.iht(x, d, m=3, init=jnp.zeros(3)), 'init'),
    (lambda x, d: solvers.iht(x, d, m=3, tol=-1.0), 'tol'),
    (lambda x, d: solvers.optimal_codes(x, d, m=50), 'm'),
])
def test_bad_input_raises_value_error(call, match):
  x, dictionary = make_problem()
  with pytest.raises(ValueError, match=match):
    call(x, dictionary)
