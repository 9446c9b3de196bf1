"""Tests of l0enc.solvers against independent references."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import linear_model

from l0enc import solvers
from references import np_top_m


@pytest.fixture(autouse=True)
def _enable_x64():
  with jax.enable_x64(True):
    yield


def make_problem(num_signals=40, n=20, p=40, sparsity=4, noise=0.01, seed=0):
  rng = np.random.default_rng(seed)
  dictionary = rng.normal(size=(n, p))
  dictionary /= np.linalg.norm(dictionary, axis=0)
  codes = np.zeros((num_signals, p))
  for row in codes:
    row[rng.choice(p, sparsity, replace=False)] = rng.normal(size=sparsity) * 2
  x = codes @ dictionary.T + noise * rng.normal(size=(num_signals, n))
  return jnp.asarray(x), jnp.asarray(dictionary)


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


@pytest.mark.parametrize('m', [1, 4, 10])
def test_omp_matches_numpy_reference(m):
  x, dictionary = make_problem(noise=0.1)
  result = solvers.omp(x, dictionary, m)
  np.testing.assert_allclose(
      result.codes, np_omp(np.asarray(x), np.asarray(dictionary), m),
      atol=1e-8)
  np.testing.assert_array_equal(np.count_nonzero(result.codes, axis=1), m)


def test_omp_handles_non_unit_atoms_and_leading_shapes():
  x, dictionary = make_problem(num_signals=12)
  scaled = dictionary * jnp.linspace(0.5, 2.0, dictionary.shape[1])
  result = solvers.omp(x.reshape(3, 4, -1), scaled, 3)
  chex.assert_shape(result.codes, (3, 4, 40))
  np.testing.assert_allclose(
      result.codes.reshape(12, -1),
      np_omp(np.asarray(x), np.asarray(scaled), 3), atol=1e-8)


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
    (lambda x, d: solvers.omp(x, d, 21), 'm'),
    (lambda x, d: solvers.optimal_codes(x, d, m=50), 'm'),
])
def test_bad_input_raises_value_error(call, match):
  x, dictionary = make_problem()
  with pytest.raises(ValueError, match=match):
    call(x, dictionary)


# ------------------------------------------------------------ normalized IHT


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
    got, step = solvers.normalized_iht_step(
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
  objectives = [solvers.normalized_iht(
      x, dictionary, num_iterations=k, **problem).objective
                for k in range(1, 25)]
  increase = np.diff(np.stack(objectives), axis=0)
  assert increase.max() <= 1e-10 * np.abs(np.stack(objectives)).max()


@pytest.mark.parametrize('problem', [{'lam': 0.02}, {'m': 4}])
def test_normalized_iht_is_scale_invariant(problem):
  # || x - (c D) b ||: the codes of c D are those of D divided by c, with the
  # same l0 weight, because the step scales as 1 / c^2.
  x, dictionary = make_problem(noise=0.05)
  codes = solvers.normalized_iht(x, dictionary, num_iterations=15,
                                 **problem).codes
  scaled = solvers.normalized_iht(x, 3.0 * dictionary, num_iterations=15,
                                  **problem).codes
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
  for solver in (solvers.iht, solvers.normalized_iht):
    again = solver(x, dictionary, num_iterations=5, init=jnp.asarray(codes),
                   **problem).codes
    chex.assert_trees_all_close(again, codes, atol=1e-10)
  # ...and normalized IHT converges to it from zero, in far fewer
  # iterations than the 200 or so that IHT needs here.
  normalized = solvers.normalized_iht(x, dictionary, num_iterations=100,
                                      tol=1e-12, **problem)
  chex.assert_trees_all_close(normalized.codes, codes, atol=1e-8)
  assert normalized.num_iterations.max() < 100


def test_normalized_iht_recovers_omp_supports():
  # On the easy problem both recover the generating supports, so they agree
  # with scikit-learn's OMP.
  x, dictionary, _ = easy_problem()
  codes = solvers.normalized_iht(x, dictionary, m=3, num_iterations=100,
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
    solvers.normalized_iht(x, dictionary, **bad)
