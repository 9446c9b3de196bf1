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

This module holds the fixed-step solvers (ISTA, FISTA, IHT and the papers'
ground truth `optimal_codes`) and what every solver shares: the problems'
objectives, the argument checks (`check_inputs`, `prepare`, `check_problem`,
`guard_traced`) and the iteration loop (`iterate`). `l0enc.adaptive_solvers`
builds normalized IHT and OMP, which need no step size, on the same parts.

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


def check_step_arguments(lam, step_size, validate):
  """Checks `lam` and `step_size` (each positive, or None) if `validate`."""
  if validate:
    validation.check_positive('step_size', step_size)
    validation.check_positive('lam', lam)


def ista_step(codes, x, dictionary, lam, step_size, *, validate=True):
  """One ISTA step for problem (3): `s_{lam mu}(a + mu D^T (x - D a))`.

  `validate=False` skips the checks of `lam` and `step_size` (positive;
  NaN results where traced ones are not), for drivers that made them once.
  """
  check_step_arguments(lam, step_size, validate)
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
  check_step_arguments(lam, step_size, validate)
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


def iterate(step: Callable, init_state, codes_of: Callable, num_iterations,
            tol):
  """Runs `state <- step(state)` a fixed number of times or to tolerance.

  Args:
    step: one iteration, `state -> state`.
    init_state: the first state.
    codes_of: the codes of a state, `(..., p)`, for the relative change.
    num_iterations: the number of iterations (`tol=None`) or the cap.
    tol: stop once every signal's relative change is at most `tol`
      (`lax.while_loop`); None runs exactly `num_iterations` (`lax.scan`).

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


def check_inputs(x, dictionary, *, init=None, num_iterations=1, tol=None,
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


def guard_traced(result: SolverResult, dictionary, lam,
                 step_size) -> SolverResult:
  """NaN codes and objectives where a traced `lam` or `step_size` is bad.

  The eager checks of `check_inputs` and `_step_size` cannot read traced values
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


def prepare(x, dictionary, init, num_iterations, tol, lam, step_size):
  """Validates a solver's arguments; returns them with its step and start.

  Returns:
    `(x, dictionary, step_size, init)`: as `check_inputs` returns them, the
    step `1 / ||D||_2^2` if `step_size` is None, zero codes if `init` is.
  """
  x, dictionary, init = check_inputs(
      x, dictionary, init=init, num_iterations=num_iterations, tol=tol,
      lam=lam, step_size=step_size)
  if init is None:
    init = jnp.zeros(x.shape[:-1] + (dictionary.shape[1],), x.dtype)
  return x, dictionary, _step_size(dictionary, step_size), init


def per_signal(lam, x):
  """A scalar or per-signal `(...)` weight, broadcastable against codes."""
  return jnp.asarray(lam, x.dtype)[..., None]


# ------------------------------------------------------------------- solvers


@functools.partial(jax.jit, static_argnames=('num_iterations', 'tol'))
def _ista(x, dictionary, lam, step_size, init, num_iterations, tol):
  step = lambda a: ista_step(a, x, dictionary, lam, step_size, validate=False)
  codes, used = iterate(step, init, lambda a: a, num_iterations, tol)
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
  x, dictionary, step, init = prepare(x, dictionary, init, num_iterations,
                                      tol, lam, step_size)
  return guard_traced(
      _ista(x, dictionary, per_signal(lam, x), step, init, num_iterations,
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
  state, used = iterate(step, _FistaState(init, init, momentum),
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
  x, dictionary, step, init = prepare(x, dictionary, init, num_iterations,
                                      tol, lam, step_size)
  return guard_traced(
      _fista(x, dictionary, per_signal(lam, x), step, init, num_iterations,
             tol), dictionary, lam, step_size)


@functools.partial(jax.jit, static_argnames=('m', 'num_iterations', 'tol'))
def _iht(x, dictionary, lam, m, step_size, init, num_iterations, tol):
  step = lambda a: iht_step(a, x, dictionary, step_size, lam=lam, m=m,
                            validate=False)
  codes, used = iterate(step, init, lambda a: a, num_iterations, tol)
  if m is not None:
    objective = msparse_objective(x, dictionary, codes)
  else:
    objective = l0_objective(x, dictionary, codes, lam[..., 0])
  return SolverResult(codes, used, objective)


def check_problem(dictionary, lam, m):
  """Checks that exactly one of problem (1)'s `lam` and (2)'s `m` is given.

  Returns:
    `m` as an int in [1, p], or None for problem (1).
  """
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
  x, dictionary, step, init = prepare(x, dictionary, init, num_iterations,
                                      tol, lam, step_size)
  m = check_problem(dictionary, lam, m)
  per_signal_lam = None if lam is None else per_signal(lam, x)
  return guard_traced(
      _iht(x, dictionary, per_signal_lam, m, step, init, num_iterations, tol),
      dictionary, lam, step_size)


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
  x, dictionary, _ = check_inputs(x, dictionary,
                                  num_iterations=max_iterations, tol=tol,
                                  lam=lam, step_size=step_size)
  check_problem(dictionary, lam, m)
  step_size = _step_size(dictionary, step_size)
  warm_start = l1_warm_start(x, dictionary, lam=lam, l1_lam=l1_lam, tol=tol,
                             max_iterations=max_iterations,
                             step_size=step_size)
  return iht(x, dictionary, lam=lam, m=m, num_iterations=max_iterations,
             tol=tol, step_size=step_size, init=warm_start.codes)


def l1_warm_start(x, dictionary, *, lam=None, l1_lam=None, tol=1e-6,
                  max_iterations=10_000, step_size=None) -> SolverResult:
  """The l1 solution `optimal_codes` starts IHT from (FISTA to `tol`).

  Args:
    x: signals, shape `(..., n)`.
    dictionary: shape `(n, p)`.
    lam: l0 weight of problem (1), or None for problem (2): sets the default
      `l1_lam` (`default_l1_lam`).
    l1_lam: the l1 weight; `default_l1_lam` when None.
    tol: relative-change tolerance.
    max_iterations: cap on the iterations.
    step_size: `mu`, at most (and by default) `1 / ||D||_2^2`.

  Returns:
    FISTA's `SolverResult`.
  """
  if l1_lam is None:
    l1_lam = default_l1_lam(x, dictionary, lam=lam)
  return fista(x, dictionary, l1_lam, num_iterations=max_iterations, tol=tol,
               step_size=step_size)
