"""l0 solvers that adapt their steps to the data: normalized IHT and OMP.

Both solve the problems of `l0enc.solvers` (1, l0-regularized, and 2,
M-sparse; see its docstring) without a step size to choose, so the scale and
conditioning of the dictionary do not slow them down as they slow down the
fixed step `1 / ||D||_2^2` of `solvers.iht`:

- `normalized_iht` (Blumensath and Davies, 2010): IHT whose step is, per
  signal and iteration, a line search along the gradient on the support,
  shrunk until the objective cannot increase.
- `omp`: orthogonal matching pursuit for problem (2) (Batch-OMP, Rubinstein,
  Zibulevsky and Elad, 2008): `m` greedy atom selections, each followed by
  least squares on the support.

They share the argument checks, the fixed-count or tolerance loop and the
`SolverResult` of `l0enc.solvers`.
"""

import functools

import jax
import jax.numpy as jnp

from l0enc import ops
from l0enc import solvers
from l0enc import validation

# Normalized IHT (Blumensath and Davies, 2010): the step is the exact line
# search along the gradient restricted to the current support, shrunk by
# backtracking until the majorization that makes IHT monotone holds.
_NIHT_SHRINK = 2.0  # k of their rule: mu <- mu / (k (1 - c)).
_NIHT_SLACK = 0.01  # c of their rule.


def _niht_threshold(u, step_size, lam, m):
  """H of problem (1) at `sqrt(2 lam mu)` (mu per signal) or of problem (2)."""
  if m is not None:
    return ops.top_m(u, m)
  # The threshold is positive by construction: the step is a line search.
  return ops.hard_threshold(u, solvers.iht_threshold(lam, step_size),
                            validate=False)


def normalized_iht_step(codes, x, dictionary, *, lam=None, m=None,
                        max_backtracks=32, validate=True):
  """One normalized IHT step (Blumensath and Davies, 2010), per signal.

  With `g = D^T (x - D a)` and the support `S` of `a` (for the first step
  from zero: that of `H_m(g)` for problem (2), every index for problem (1)),
  the step is `mu = ||g_S||^2 / ||D g_S||^2`, the exact minimizer of the
  quadratic term along `g_S`, and the candidate `a' = H(a + mu g)` (H the
  hard threshold at `sqrt(2 lam mu)` for problem (1), keep-top-m for (2)).
  It is accepted if its support is `S` or if
  `mu <= (1 - c) ||a' - a||^2 / ||D (a' - a)||^2`; otherwise
  `mu <- mu / (k (1 - c))` (k = 2, c = 0.01) and the candidate is recomputed.
  Either condition makes the objective of problem (1) or (2) non-increasing,
  whatever the scale of D: the step scales as `1 / ||D||^2`, so the
  iteration is invariant to rescaling the dictionary.

  The backtracking is a `lax.while_loop` (every signal's step shrinks until
  all are accepted, at most `max_backtracks` times), so the step is not
  reverse-mode differentiable; `iht` is.

  Args:
    codes: current codes, shape `(..., p)`.
    x: signals, shape `(..., n)`.
    dictionary: shape `(n, p)`.
    lam: for problem (1), its l0 weight (shape broadcastable to `(..., 1)`).
    m: for problem (2), the sparsity.
    max_backtracks: cap on the step shrinkings of one step.
    validate: check `lam` (positive, like the solvers); False for drivers
      that checked it.

  Returns:
    `(new_codes, step_size)`, the step of shape `(..., 1)`.
  """
  solvers.check_step_arguments(lam, None, validate)
  gradient = solvers.matmul(x - solvers.matmul(codes, dictionary.T),
                            dictionary)
  support = codes != 0
  if m is not None:
    first_support = ops.top_m(gradient, m) != 0
  else:
    first_support = jnp.ones_like(support)
  support = jnp.where(jnp.any(support, axis=-1, keepdims=True), support,
                      first_support)
  squared_norm = lambda v: jnp.sum(v * v, axis=-1, keepdims=True)
  restricted = jnp.where(support, gradient, 0)
  numerator = squared_norm(restricted)
  denominator = squared_norm(solvers.matmul(restricted, dictionary.T))
  # No descent direction on the support (a stationary point of the
  # restricted problem): fall back to the fixed IHT step 1 / ||D||^2.
  fallback = 1 / solvers.lipschitz_constant(dictionary)
  step_size = jnp.where(denominator > 0,
                        numerator / jnp.where(denominator > 0, denominator, 1),
                        fallback)

  def candidate(step_size):
    new = _niht_threshold(codes + step_size * gradient, step_size, lam, m)
    change = new - codes
    change_energy = squared_norm(solvers.matmul(change, dictionary.T))
    omega = (1 - _NIHT_SLACK) * squared_norm(change) / jnp.where(
        change_energy > 0, change_energy, 1)
    accepted = (jnp.all((new != 0) == support, axis=-1, keepdims=True) |
                (change_energy <= 0) | (step_size <= omega))
    return new, accepted

  def cond(carry):
    count, _, _, accepted = carry
    return (count < max_backtracks) & ~jnp.all(accepted)

  def body(carry):
    count, step_size, _, accepted = carry
    step_size = jnp.where(
        accepted, step_size,
        step_size / (_NIHT_SHRINK * (1 - _NIHT_SLACK)))
    return (count + 1, step_size, *candidate(step_size))

  _, step_size, new, _ = jax.lax.while_loop(
      cond, body, (jnp.int32(0), step_size, *candidate(step_size)))
  return new, step_size


@functools.partial(jax.jit,
                   static_argnames=('m', 'num_iterations', 'tol',
                                    'max_backtracks'))
def _normalized_iht(x, dictionary, lam, m, init, num_iterations, tol,
                    max_backtracks):
  step = lambda a: normalized_iht_step(a, x, dictionary, lam=lam, m=m,
                                       max_backtracks=max_backtracks,
                                       validate=False)[0]
  codes, used = solvers.iterate(step, init, lambda a: a, num_iterations, tol)
  if m is not None:
    objective = solvers.msparse_objective(x, dictionary, codes)
  else:
    objective = solvers.l0_objective(x, dictionary, codes, lam[..., 0])
  return solvers.SolverResult(codes, used, objective)


def normalized_iht(x, dictionary, *, lam=None, m=None, num_iterations=1000,
                   tol=None, init=None, max_backtracks=32
                   ) -> solvers.SolverResult:
  """Normalized IHT for problem (1) or (2): IHT with an adaptive step.

  Each signal takes its own step, the line search of
  `normalized_iht_step` (Blumensath and Davies, "Normalized iterative hard
  thresholding: guaranteed stability and performance", IEEE J-STSP 2010),
  instead of the worst-case `1 / ||D||_2^2`: on an ill-conditioned
  dictionary it converges in far fewer iterations than `iht`, and it needs
  no step size. The objective never increases.

  Args:
    x: signals, shape `(..., n)`.
    dictionary: shape `(n, p)`.
    lam: l0 weight of problem (1), positive; scalar or shape `(...)`.
    m: sparsity of problem (2), an int in [1, p]. Give exactly one of lam, m.
    num_iterations: the number of iterations (`tol=None`) or the cap.
    tol: relative-change tolerance (see `ista`); None for a fixed count.
    init: starting codes, shape `(..., p)`; zeros by default.
    max_backtracks: cap on the step shrinkings within one iteration.

  Returns:
    `SolverResult(codes, num_iterations, objective)`, with the objective of
    problem (1) or (2).
  """
  x, dictionary, _, init = solvers.prepare(x, dictionary, init,
                                           num_iterations, tol, lam, None)
  m = solvers.check_problem(dictionary, lam, m)
  validation.check_int_in_range('max_backtracks', max_backtracks, 0,
                                2**31 - 1)
  per_signal_lam = None if lam is None else solvers.per_signal(lam, x)
  return solvers.guard_traced(
      _normalized_iht(x, dictionary, per_signal_lam, m, init, num_iterations,
                      tol, max_backtracks), dictionary, lam, None)




# ------------------------------------------------------------------------ OMP


def _solve_lower(lower, rhs, trans='N'):
  """Batched `L^-1 b` (or `L^-T b`) for `L` of shape (B, m, m), b (B, m)."""
  return jax.scipy.linalg.solve_triangular(
      lower, rhs[..., None], lower=True, trans=trans)[..., 0]


@functools.partial(jax.jit, static_argnames=('m',))
def _omp(x, dictionary, m):
  # Batch-OMP (Rubinstein, Zibulevsky and Elad, 2008): the Gram matrix is
  # formed once, and the Cholesky factor of the selected atoms' Gram grows by
  # one row per step, so each step costs a triangular solve of size <= m
  # instead of a least-squares problem.
  batch_shape, p = x.shape[:-1], dictionary.shape[1]
  x_flat = x.reshape(-1, x.shape[-1])
  num_signals = x_flat.shape[0]
  rows = jnp.arange(num_signals)[:, None]
  gram = solvers.matmul(dictionary.T, dictionary)
  atom_norms = jnp.sqrt(jnp.diagonal(gram))
  # D^T x, shape (signals, p).
  correlation0 = solvers.matmul(x_flat, dictionary)
  eye = jnp.eye(m, dtype=x.dtype)

  def body(k, carry):
    support, cholesky, codes, correlation = carry
    # Counts, not .set: padded slots also point at atom 0, and the order of
    # duplicate scatter writes is unspecified.
    selected = jnp.zeros((num_signals, p), jnp.int32).at[rows, support].add(
        jnp.arange(m) < k) > 0
    score = jnp.where(selected, -1, jnp.abs(correlation) / atom_norms)
    atom = jnp.argmax(score, axis=-1).astype(jnp.int32)
    # New row of the Cholesky factor: [w^T, sqrt(G_jj - w^T w)], with
    # L w = G[support, atom]; padded rows of L are the identity.
    gram_column = jnp.where(jnp.arange(m) < k, gram[support, atom[:, None]], 0)
    w = _solve_lower(cholesky, gram_column)
    diagonal = jnp.sqrt(jnp.maximum(gram[atom, atom] - jnp.sum(w * w, -1),
                                    jnp.finfo(x.dtype).eps))
    new_row = w + diagonal[:, None] * eye[k]
    cholesky = cholesky.at[:, k, :].set(new_row)
    support = support.at[:, k].set(atom)
    # Least squares on the support: L L^T gamma = D_S^T x.
    rhs = jnp.where(jnp.arange(m) <= k, correlation0[rows, support], 0)
    gamma = _solve_lower(cholesky, _solve_lower(cholesky, rhs), trans='T')
    # .add, not .set: padded support slots point at atom 0 with gamma = 0.
    codes = jnp.zeros((num_signals, p), x.dtype).at[rows, support].add(gamma)
    correlation = correlation0 - solvers.matmul(codes, gram)
    return support, cholesky, codes, correlation

  init = (jnp.zeros((num_signals, m), jnp.int32),
          jnp.broadcast_to(eye, (num_signals, m, m)),
          jnp.zeros((num_signals, p), x.dtype), correlation0)
  _, _, codes, _ = jax.lax.fori_loop(0, m, body, init)
  codes = codes.reshape(batch_shape + (p,))
  return solvers.SolverResult(codes, jnp.full(batch_shape, m, jnp.int32),
                              solvers.msparse_objective(x, dictionary, codes))


def omp(x, dictionary, m) -> solvers.SolverResult:
  """Orthogonal matching pursuit for the M-sparse problem (2), batched.

  Greedy: `m` times, add the atom most correlated with the residual
  (`|d_j^T r| / ||d_j||`) to the support, then refit the codes on the support
  by least squares. Every signal takes exactly `m` steps, so the batch runs in
  lock step under `jit`.

  Args:
    x: signals, shape `(..., n)`.
    dictionary: shape `(n, p)`, atoms of any nonzero norm.
    m: number of atoms per signal, an int in [1, min(n, p)].

  Returns:
    `SolverResult(codes, num_iterations=m, objective=||x - D a||^2)`.
  """
  x, dictionary, _ = solvers.check_inputs(x, dictionary)
  m = validation.check_int_in_range(
      f'm (at most min(n, p) = {min(dictionary.shape)})', m, 1,
      min(dictionary.shape))
  if validation.is_concrete(dictionary):
    with jax.ensure_compile_time_eval():
      zero_atoms = jnp.flatnonzero(jnp.all(dictionary == 0, axis=0))
    if zero_atoms.size:
      raise ValueError(f'dictionary has all-zero atoms (columns '
                       f'{zero_atoms[:10].tolist()}); OMP needs atoms of '
                       'nonzero norm.')
  return _omp(x, dictionary, m)
