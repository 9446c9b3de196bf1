"""Classical sparse coding solvers, batched over many signals at once.

The three problems (Wang et al., Deep l0 Encoders, eqs. 1-3), for a signal
`x` in R^n and a dictionary `D` in R^{n x p}:

  (1) l0-regularized:  min_a 1/2 ||x - D a||^2 + lam ||a||_0
  (2) M-sparse:        min_a ||x - D a||^2   s.t.  ||a||_0 <= M
  (3) l1-regularized:  min_a 1/2 ||x - D a||^2 + lam ||a||_1

All solvers take `x` of shape `(..., n)` and return codes of shape `(..., p)`.
They iterate a fixed number of times with `lax.scan` (reverse-mode
differentiable, `tol=None`) or until every signal's relative change falls
under `tol` with `lax.while_loop`.

Step sizes. Proximal gradient steps use `mu <= 1 / ||D||_2^2` (the Lipschitz
constant of the gradient of the quadratic term), the default being equality.
The IHT step for (1) is then a hard threshold at `sqrt(2 lam mu)`. The paper
writes IHT (eq. 6) with mu = 1 and threshold `lam_paper ** 0.5`, which is the
same iteration for `||x - D a||^2 + lam_paper ||a||_0` (no 1/2) when
`||D||_2 < 1`: in our scaling `lam = lam_paper / 2`, and with mu = 1 the
threshold `sqrt(2 lam)` equals the paper's `lam_paper ** 0.5`.
"""

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from l0enc import ops
from l0enc import validation

# Relative slack when checking step_size <= 1 / ||D||^2 (the norm is computed
# in floating point).
_STEP_SLACK = 1e-5


def matmul(a, b):
  """`a @ b` in full float32 precision, on every backend."""
  # Full float32 precision: on GPUs the default lets XLA use TF32 (about three
  # significant digits), too coarse for solving to a tolerance of 1e-6.
  return jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)


class SolverResult(NamedTuple):
  """Result of an iterative solver.

  Attributes:
    codes: the sparse codes, shape `(..., p)`.
    num_iterations: iterations each signal needed, shape `(...)`, int32. With
      a tolerance, the first iteration at which the signal's relative change
      fell under it (the solver keeps iterating until all signals have);
      otherwise the fixed number of iterations.
    objective: the problem's objective at `codes`, shape `(...)`.
  """
  codes: jax.Array
  num_iterations: jax.Array
  objective: jax.Array


# ----------------------------------------------------------------- objectives


def _residual_energy(x, dictionary, codes):
  residual = x - matmul(codes, dictionary.T)
  return jnp.sum(residual * residual, axis=-1)


def l1_objective(x, dictionary, codes, lam):
  """`1/2 ||x - D a||^2 + lam ||a||_1` per signal (problem 3)."""
  return (0.5 * _residual_energy(x, dictionary, codes) +
          lam * jnp.sum(jnp.abs(codes), axis=-1))


def l0_objective(x, dictionary, codes, lam):
  """`1/2 ||x - D a||^2 + lam ||a||_0` per signal (problem 1)."""
  return (0.5 * _residual_energy(x, dictionary, codes) +
          lam * jnp.count_nonzero(codes, axis=-1).astype(codes.dtype))


def msparse_objective(x, dictionary, codes):
  """`||x - D a||^2` per signal (problem 2; the constraint is not checked)."""
  return _residual_energy(x, dictionary, codes)


# ---------------------------------------------------------------- step rules


def lipschitz_constant(dictionary: jax.Array) -> jax.Array:
  """`||D||_2^2`, the Lipschitz constant of the gradient of 1/2||x - D a||^2."""
  return jnp.linalg.norm(dictionary, ord=2) ** 2


def iht_threshold(lam, step_size):
  """Hard threshold `sqrt(2 lam mu)` of one IHT step on problem (1)."""
  return jnp.sqrt(2 * lam * step_size)


def _gradient_step(codes, x, dictionary, step_size):
  # a + mu D^T (x - D a): the same as W x + S a with W = mu D^T and
  # S = I - mu D^T D (eq. 8), but O(np) instead of O(p^2) per signal.
  residual = x - matmul(codes, dictionary.T)
  return codes + step_size * matmul(residual, dictionary)


def _check_step_arguments(lam, step_size, validate):
  if validate:
    validation.check_positive('step_size', step_size)
    validation.check_positive('lam', lam)


def ista_step(codes, x, dictionary, lam, step_size, *, validate=True):
  """One ISTA step for problem (3): `s_{lam mu}(a + mu D^T (x - D a))`.

  `validate=False` skips the checks of `lam` and `step_size` (positive;
  NaN results where traced ones are not), for drivers that made them once.
  """
  _check_step_arguments(lam, step_size, validate)
  return ops.soft_threshold(
      _gradient_step(codes, x, dictionary, step_size), lam * step_size,
      validate=validate)


def iht_step(codes, x, dictionary, step_size, *, lam=None, m=None,
             validate=True):
  """One IHT step (eqs. 6 and 10): `H(a + mu D^T (x - D a))`.

  Args:
    codes: current codes, shape `(..., p)`.
    x: signals, shape `(..., n)`.
    dictionary: shape `(n, p)`.
    step_size: `mu <= 1 / ||D||_2^2`.
    lam: for problem (1): H is the hard threshold at `sqrt(2 lam mu)`.
    m: for problem (2): H keeps the `m` entries of largest magnitude.
    validate: check `step_size` and `lam` (positive, like the solvers; NaN
      codes where traced ones are not); False for drivers that checked them.

  Returns:
    The new codes, shape `(..., p)`.
  """
  _check_step_arguments(lam, step_size, validate)
  u = _gradient_step(codes, x, dictionary, step_size)
  if validate and not validation.is_concrete(step_size):
    u = validation.nan_unless(
        validation.is_positive_and_finite(step_size), u,
        'step_size must be positive and finite, got {step_size}.',
        step_size=step_size)
  if m is not None:
    return ops.top_m(u, m)
  return ops.hard_threshold(u, iht_threshold(lam, step_size),
                            validate=validate)


# ------------------------------------------------------------------- drivers


def _relative_change(new, old):
  change = jnp.linalg.norm(new - old, axis=-1)
  scale = jnp.maximum(jnp.linalg.norm(old, axis=-1),
                      jnp.finfo(old.dtype).tiny)
  return change / scale


def _iterate(step: Callable, init_state, codes_of: Callable, num_iterations,
             tol):
  """Runs `state <- step(state)` a fixed number of times or to tolerance.

  Returns:
    `(final_state, num_iterations)` where the second has the batch shape.
  """
  batch_shape = codes_of(init_state).shape[:-1]
  if tol is None:
    state, _ = jax.lax.scan(lambda s, _: (step(s), None), init_state,
                            length=num_iterations)
    return state, jnp.full(batch_shape, num_iterations, jnp.int32)

  def cond(carry):
    k, _, done, _ = carry
    return (k < num_iterations) & ~jnp.all(done)

  def body(carry):
    k, state, done, used = carry
    new_state = step(state)
    converged = _relative_change(codes_of(new_state), codes_of(state)) <= tol
    used = jnp.where(done, used, k + 1)
    return k + 1, new_state, done | converged, used

  init = (jnp.int32(0), init_state, jnp.zeros(batch_shape, bool),
          jnp.zeros(batch_shape, jnp.int32))
  _, state, _, used = jax.lax.while_loop(cond, body, init)
  return state, used


# ---------------------------------------------------------------- validation


def _validate(x, dictionary, *, init=None, num_iterations=1, tol=None,
              lam=None, step_size=None):
  """Checks what all solvers share; returns `(x, dictionary, init)` as floats.

  Integer arrays and nested lists are cast to float and `x` and `dictionary`
  brought to a common dtype; complex and float16 inputs are refused.
  """
  x = validation.as_float_array('x', x)
  dictionary = validation.as_float_array('dictionary', dictionary)
  if dictionary.ndim != 2:
    raise ValueError(
        f'dictionary must have shape (n, p), got {dictionary.shape}.')
  if x.ndim < 1 or x.shape[-1] != dictionary.shape[0]:
    raise ValueError(
        f'x must have shape (..., {dictionary.shape[0]}) to match the '
        f'dictionary of shape {dictionary.shape}, got {x.shape}.')
  dtype = jnp.result_type(x.dtype, dictionary.dtype)
  x, dictionary = x.astype(dtype), dictionary.astype(dtype)
  code_shape = x.shape[:-1] + (dictionary.shape[1],)
  if init is not None:
    init = validation.as_float_array('init', init).astype(dtype)
    if init.shape != code_shape:
      raise ValueError(f'init must have shape {code_shape}, got '
                       f'{init.shape}.')
  validation.check_int_in_range('num_iterations', num_iterations, 1, 2**31 - 1)
  validation.check_positive('tol', tol)
  validation.check_positive('lam', lam)
  validation.check_positive('step_size', step_size)
  validation.check_finite('x', x)
  validation.check_finite('dictionary', dictionary)
  validation.check_finite('init', init)
  for name, value in (('x', x), ('dictionary', dictionary), ('init', init)):
    validation.debug_check_finite(name, value)
  return x, dictionary, init


def _step_size(dictionary, step_size):
  """`step_size`, or `1 / ||D||_2^2` if None; checks it does not exceed that."""
  if not validation.is_concrete(dictionary):
    return (step_size if step_size is not None else
            1 / lipschitz_constant(dictionary))
  with jax.ensure_compile_time_eval():  # Also for a closed-over dictionary.
    lipschitz = float(lipschitz_constant(dictionary))
  if lipschitz == 0:
    raise ValueError('dictionary is all zero (||D||_2 = 0): no step size '
                     'and no code can be derived from it.')
  max_step = 1 / lipschitz
  if step_size is None:
    return max_step
  if validation.is_concrete(step_size) and float(step_size) > max_step * (
      1 + _STEP_SLACK):
    raise ValueError(
        f'step_size={float(step_size):.6g} exceeds 1/||D||_2^2 = '
        f'{max_step:.6g}; convergence is only guaranteed below it.')
  return step_size


def _guard_traced(result: SolverResult, dictionary, lam,
                  step_size) -> SolverResult:
  """NaN codes and objectives where a traced `lam` or `step_size` is bad.

  The eager checks of `_validate` and `_step_size` cannot read traced values
  (under `jit`); see `l0enc.validation`.
  """
  valid = []
  if lam is not None and not validation.is_concrete(lam):
    valid.append((validation.is_positive_and_finite(lam),
                  'lam must be positive and finite, got {value}.', lam))
  if step_size is not None and not (validation.is_concrete(step_size) and
                                    validation.is_concrete(dictionary)):
    if validation.is_concrete(dictionary):
      with jax.ensure_compile_time_eval():
        max_step = 1 / float(lipschitz_constant(dictionary))
    else:
      max_step = 1 / lipschitz_constant(dictionary)
    valid.append((validation.is_positive_and_finite(step_size) &
                  (step_size <= max_step * (1 + _STEP_SLACK)),
                  'step_size must be positive and at most 1/||D||_2^2, got '
                  '{value}.', step_size))
  codes, objective = result.codes, result.objective
  for ok, message, value in valid:
    ok = jnp.broadcast_to(ok, objective.shape)
    codes = validation.nan_unless(ok[..., None], codes, message, value=value)
    objective = jnp.where(ok, objective, jnp.nan)
  return result._replace(codes=codes, objective=objective)


def _prepare(x, dictionary, init, num_iterations, tol, lam, step_size):
  """Validates a solver's arguments; returns them with its step and start."""
  x, dictionary, init = _validate(
      x, dictionary, init=init, num_iterations=num_iterations, tol=tol,
      lam=lam, step_size=step_size)
  if init is None:
    init = jnp.zeros(x.shape[:-1] + (dictionary.shape[1],), x.dtype)
  return x, dictionary, _step_size(dictionary, step_size), init


def _per_signal(lam, x):
  """A scalar or per-signal `(...)` weight, broadcastable against codes."""
  return jnp.asarray(lam, x.dtype)[..., None]


# ------------------------------------------------------------------- solvers


@functools.partial(jax.jit, static_argnames=('num_iterations', 'tol'))
def _ista(x, dictionary, lam, step_size, init, num_iterations, tol):
  step = lambda a: ista_step(a, x, dictionary, lam, step_size, validate=False)
  codes, used = _iterate(step, init, lambda a: a, num_iterations, tol)
  return SolverResult(codes, used,
                      l1_objective(x, dictionary, codes, lam[..., 0]))


def ista(x, dictionary, lam, *, num_iterations=1000, tol=None,
         step_size=None, init=None) -> SolverResult:
  """ISTA for the l1 problem (3): `a <- s_{lam mu}(a + mu D^T (x - D a))`.

  Args:
    x: signals, shape `(..., n)`.
    dictionary: shape `(n, p)`.
    lam: l1 weight, positive; a scalar or shape `(...)` (one per signal).
    num_iterations: the number of iterations (`tol=None`) or the cap.
    tol: stop once every signal's relative change `||a_k+1 - a_k|| / ||a_k||`
      is at most `tol` (`lax.while_loop`); None runs exactly `num_iterations`
      (`lax.scan`, differentiable).
    step_size: `mu`, at most (and by default) `1 / ||D||_2^2`.
    init: starting codes, shape `(..., p)`; zeros by default.

  Returns:
    `SolverResult(codes, num_iterations, objective)` with the l1 objective.
  """
  x, dictionary, step, init = _prepare(x, dictionary, init, num_iterations,
                                       tol, lam, step_size)
  return _guard_traced(
      _ista(x, dictionary, _per_signal(lam, x), step, init, num_iterations,
            tol), dictionary, lam, step_size)


class _FistaState(NamedTuple):
  codes: jax.Array
  extrapolated: jax.Array
  momentum: jax.Array


@functools.partial(jax.jit, static_argnames=('num_iterations', 'tol'))
def _fista(x, dictionary, lam, step_size, init, num_iterations, tol):

  def step(state):
    codes = ista_step(state.extrapolated, x, dictionary, lam, step_size,
                      validate=False)
    # Adaptive restart (O'Donoghue and Candes, 2015), per signal: when the
    # momentum points against the proximal-gradient step, drop it. This keeps
    # FISTA's rate and removes its oscillations on well-conditioned problems.
    restart = jnp.sum((state.extrapolated - codes) * (codes - state.codes),
                      axis=-1, keepdims=True) > 0
    previous_momentum = jnp.where(restart, 1, state.momentum)
    momentum = (1 + jnp.sqrt(1 + 4 * previous_momentum**2)) / 2
    extrapolated = codes + ((previous_momentum - 1) / momentum) * (
        codes - state.codes)
    return _FistaState(codes, extrapolated, momentum)

  momentum = jnp.ones(init.shape[:-1] + (1,), x.dtype)
  state, used = _iterate(step, _FistaState(init, init, momentum),
                         lambda s: s.codes, num_iterations, tol)
  return SolverResult(state.codes, used, l1_objective(
      x, dictionary, state.codes, lam[..., 0]))


def fista(x, dictionary, lam, *, num_iterations=1000, tol=None,
          step_size=None, init=None) -> SolverResult:
  """FISTA (Beck and Teboulle, 2009) for the l1 problem (3).

  ISTA's step taken at the extrapolated point `y_k = a_k + (t_k-1 - 1)/t_k
  (a_k - a_k-1)`, `t_k = (1 + sqrt(1 + 4 t_k-1^2)) / 2`: O(1/k^2) instead of
  O(1/k) convergence in objective; the momentum of each signal restarts
  (`t = 1`) whenever it opposes the step (gradient-based adaptive restart).

  Args:
    x: signals, shape `(..., n)`.
    dictionary: shape `(n, p)`.
    lam: l1 weight, positive; a scalar or shape `(...)` (one per signal).
    num_iterations: the number of iterations (`tol=None`) or the cap.
    tol: relative-change tolerance (see `ista`); None for a fixed count.
    step_size: `mu`, at most (and by default) `1 / ||D||_2^2`.
    init: starting codes, shape `(..., p)`; zeros by default.

  Returns:
    `SolverResult(codes, num_iterations, objective)` with the l1 objective.
  """
  x, dictionary, step, init = _prepare(x, dictionary, init, num_iterations,
                                       tol, lam, step_size)
  return _guard_traced(
      _fista(x, dictionary, _per_signal(lam, x), step, init, num_iterations,
             tol), dictionary, lam, step_size)


@functools.partial(jax.jit, static_argnames=('m', 'num_iterations', 'tol'))
def _iht(x, dictionary, lam, m, step_size, init, num_iterations, tol):
  step = lambda a: iht_step(a, x, dictionary, step_size, lam=lam, m=m,
                            validate=False)
  codes, used = _iterate(step, init, lambda a: a, num_iterations, tol)
  if m is not None:
    objective = msparse_objective(x, dictionary, codes)
  else:
    objective = l0_objective(x, dictionary, codes, lam[..., 0])
  return SolverResult(codes, used, objective)


def _check_problem(dictionary, lam, m):
  if (lam is None) == (m is None):
    raise ValueError('Give exactly one of lam (problem 1) and m (problem 2); '
                     f'got lam={lam!r}, m={m!r}.')
  if m is not None:
    return validation.check_int_in_range(
        f'm (at most the code size p={dictionary.shape[-1]})', m, 1,
        dictionary.shape[-1])
  return None


def iht(x, dictionary, *, lam=None, m=None, num_iterations=1000, tol=None,
        step_size=None, init=None) -> SolverResult:
  """Iterative hard thresholding for problem (1) or (2) (eqs. 6 and 10).

  `a <- H(a + mu D^T (x - D a))`, with H the hard threshold at
  `sqrt(2 lam mu)` for problem (1) or keep-top-m for problem (2). With
  `mu <= 1 / ||D||_2^2` the objective never increases (Blumensath and Davies,
  2008). See the module docstring for the paper's lambda.

  Args:
    x: signals, shape `(..., n)`.
    dictionary: shape `(n, p)`.
    lam: l0 weight of problem (1), positive; scalar or shape `(...)`.
    m: sparsity of problem (2), an int in [1, p]. Give exactly one of lam, m.
    num_iterations: the number of iterations (`tol=None`) or the cap.
    tol: relative-change tolerance (see `ista`); None for a fixed count.
    step_size: `mu`, at most (and by default) `1 / ||D||_2^2`.
    init: starting codes, shape `(..., p)`; zeros by default.

  Returns:
    `SolverResult(codes, num_iterations, objective)`, with the objective of
    problem (1) or (2).
  """
  x, dictionary, step, init = _prepare(x, dictionary, init, num_iterations,
                                       tol, lam, step_size)
  m = _check_problem(dictionary, lam, m)
  per_signal_lam = None if lam is None else _per_signal(lam, x)
  return _guard_traced(
      _iht(x, dictionary, per_signal_lam, m, step, init, num_iterations, tol),
      dictionary, lam, step_size)


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
  return ops.hard_threshold(u, iht_threshold(lam, step_size), validate=False)


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
  _check_step_arguments(lam, None, validate)
  gradient = matmul(x - matmul(codes, dictionary.T), dictionary)
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
  denominator = squared_norm(matmul(restricted, dictionary.T))
  # No descent direction on the support (a stationary point of the
  # restricted problem): fall back to the fixed IHT step 1 / ||D||^2.
  fallback = 1 / lipschitz_constant(dictionary)
  step_size = jnp.where(denominator > 0,
                        numerator / jnp.where(denominator > 0, denominator, 1),
                        fallback)

  def candidate(step_size):
    new = _niht_threshold(codes + step_size * gradient, step_size, lam, m)
    change = new - codes
    change_energy = squared_norm(matmul(change, dictionary.T))
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
  codes, used = _iterate(step, init, lambda a: a, num_iterations, tol)
  if m is not None:
    objective = msparse_objective(x, dictionary, codes)
  else:
    objective = l0_objective(x, dictionary, codes, lam[..., 0])
  return SolverResult(codes, used, objective)


def normalized_iht(x, dictionary, *, lam=None, m=None, num_iterations=1000,
                   tol=None, init=None, max_backtracks=32) -> SolverResult:
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
  x, dictionary, _, init = _prepare(x, dictionary, init, num_iterations, tol,
                                    lam, None)
  m = _check_problem(dictionary, lam, m)
  validation.check_int_in_range('max_backtracks', max_backtracks, 0,
                                2**31 - 1)
  per_signal_lam = None if lam is None else _per_signal(lam, x)
  return _guard_traced(
      _normalized_iht(x, dictionary, per_signal_lam, m, init, num_iterations,
                      tol, max_backtracks), dictionary, lam, None)


def default_l1_lam(x, dictionary, *, lam=None):
  """The l1 weight `optimal_codes` warm-starts from.

  For problem (1), `sqrt(2 lam)`: an atom `d_i` (unit norm) stays out of an
  l0 solution when `|d_i^T r| < sqrt(2 lam)`, and out of an l1 solution when
  `|d_i^T r| <= lam_1`, so both solutions share their off-support condition.
  For problem (2), a tenth of `||D^T x||_inf` per signal, which gives a dense
  enough support for IHT's first top-m step to choose from.
  """
  if lam is not None:
    return jnp.sqrt(2 * jnp.asarray(lam, x.dtype))
  return 0.1 * jnp.max(jnp.abs(matmul(x, dictionary)), axis=-1)


def optimal_codes(x, dictionary, *, lam=None, m=None, l1_lam=None, tol=1e-6,
                  max_iterations=10_000, step_size=None) -> SolverResult:
  """The papers' ground-truth codes: l1 solution, then IHT to convergence.

  The l0 problems are non-convex and IHT only reaches a local minimum that
  depends on where it starts; the paper (Experiment A) starts it from the
  solution of the l1 problem (3) for stability. We solve (3) with FISTA to
  `tol`, then run IHT on problem (1) or (2) from there to `tol`.

  Args:
    x: signals, shape `(..., n)`.
    dictionary: shape `(n, p)`.
    lam: l0 weight of problem (1). Give exactly one of lam and m.
    m: sparsity of problem (2).
    l1_lam: weight of the l1 warm start; `default_l1_lam` when None.
    tol: relative-change tolerance for both phases.
    max_iterations: cap on the iterations of each phase.
    step_size: `mu`, at most (and by default) `1 / ||D||_2^2`.

  Returns:
    `SolverResult` of the IHT phase (its `num_iterations` counts IHT only).
  """
  x, dictionary, _ = _validate(x, dictionary, num_iterations=max_iterations,
                               tol=tol, lam=lam, step_size=step_size)
  _check_problem(dictionary, lam, m)
  step_size = _step_size(dictionary, step_size)
  if l1_lam is None:
    l1_lam = default_l1_lam(x, dictionary, lam=lam)
  warm_start = fista(x, dictionary, l1_lam, num_iterations=max_iterations,
                     tol=tol, step_size=step_size)
  return iht(x, dictionary, lam=lam, m=m, num_iterations=max_iterations,
             tol=tol, step_size=step_size, init=warm_start.codes)


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
  gram = matmul(dictionary.T, dictionary)
  atom_norms = jnp.sqrt(jnp.diagonal(gram))
  correlation0 = matmul(x_flat, dictionary)  # D^T x, shape (signals, p).
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
    correlation = correlation0 - matmul(codes, gram)
    return support, cholesky, codes, correlation

  init = (jnp.zeros((num_signals, m), jnp.int32),
          jnp.broadcast_to(eye, (num_signals, m, m)),
          jnp.zeros((num_signals, p), x.dtype), correlation0)
  _, _, codes, _ = jax.lax.fori_loop(0, m, body, init)
  codes = codes.reshape(batch_shape + (p,))
  return SolverResult(codes, jnp.full(batch_shape, m, jnp.int32),
                      msparse_objective(x, dictionary, codes))


def omp(x, dictionary, m) -> SolverResult:
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
  x, dictionary, _ = _validate(x, dictionary)
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
