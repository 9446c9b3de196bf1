"""Task-driven sparse coding (TDSC; Mairal, Bach and Ponce, TPAMI 2012).

The l0 paper's reference method for classification (Tables 4-5): the
features are the exact solutions of a sparse coding problem, the elastic net

    a*(x, D) = argmin_a 1/2 ||x - D a||^2 + lam1 ||a||_1 + lam2/2 ||a||^2,

and the dictionary D is learned for the task by differentiating the task
loss through a*. On the active set L = {i : a*_i != 0} the optimality
condition `D_L^T (D_L a_L - x) + lam2 a_L + lam1 sign(a_L) = 0` is smooth,
so (Mairal et al., Proposition 1) for a loss gradient g = dloss/da*:

    beta_L = (D_L^T D_L + lam2 I)^{-1} g_L,   beta_{L^c} = 0,
    dloss/dx = D beta,
    dloss/dD = (x - D a*) beta^T - D beta a*^T.

`elastic_net_codes` computes a* with FISTA (a fixed number of iterations,
from zero; the problem is strongly convex for lam2 > 0) and has this
gradient as its custom VJP: implicit differentiation of the fixed point on
the active set, not backpropagation through the iterations. The gradient is
that of the exact solution; it is accurate once FISTA has converged and the
active set is found (and exact almost everywhere: a* is piecewise smooth in
(x, D), with kinks where the active set changes).

`ElasticNetEncoder` is the sparse coding layer as an NNX encoder, with atoms
kept in the unit ball (`d_j / max(1, ||d_j||)`, the constraint set of TDSC,
as a reparametrization instead of a projection step), so that TDSC is
`tasks.TaskModel(ElasticNetEncoder(D0, ...), num_classes)` trained by
`train.fit` like every other encoder (the head's weight decay is TDSC's
`nu/2 ||W||^2`).
"""

import functools
from typing import Any

from flax import nnx
import jax
import jax.numpy as jnp

from l0enc import ops
from l0enc import solvers
from l0enc import validation


def _fista(drive, gram, lam1, step_size, num_iterations):
  """FISTA with adaptive restart on `1/2 a^T G a - c^T a + lam1 ||a||_1`.

  Written on the Gram matrix `G = D^T D + lam2 I` and `c = D^T x`: each
  iteration costs O(p^2) per signal instead of O(n p).
  """

  def step(state, _):
    codes, extrapolated, momentum = state
    gradient = solvers.matmul(extrapolated, gram) - drive
    # lam1 and the step are checked once, by `elastic_net_codes`.
    new_codes = ops.soft_threshold(extrapolated - step_size * gradient,
                                   lam1 * step_size, validate=False)
    # Gradient-based adaptive restart (O'Donoghue and Candes 2015).
    restart = jnp.sum((extrapolated - new_codes) * (new_codes - codes),
                      axis=-1, keepdims=True) > 0
    momentum = jnp.where(restart, 1.0, momentum)
    new_momentum = (1 + jnp.sqrt(1 + 4 * momentum**2)) / 2
    extrapolated = new_codes + ((momentum - 1) / new_momentum) * (
        new_codes - codes)
    return (new_codes, extrapolated, new_momentum), None

  zeros = jnp.zeros_like(drive)
  momentum = jnp.ones(drive.shape[:-1] + (1,), drive.dtype)
  (codes, _, _), _ = jax.lax.scan(step, (zeros, zeros, momentum), None,
                                  length=num_iterations)
  return codes


def _gram(dictionary, lam2):
  code_dim = dictionary.shape[1]
  return (solvers.matmul(dictionary.T, dictionary)
          + lam2 * jnp.eye(code_dim, dtype=dictionary.dtype))


def _solve(x, dictionary, lam1, lam2, num_iterations):
  gram = _gram(dictionary, lam2)
  # The Lipschitz constant of the smooth part: ||D||_2^2 + lam2.
  step_size = 1.0 / jnp.linalg.eigvalsh(gram)[-1]
  return _fista(solvers.matmul(x, dictionary), gram, lam1, step_size,
                num_iterations)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _elastic_net(x, dictionary, lam1, lam2, num_iterations):
  return _solve(x, dictionary, lam1, lam2, num_iterations)


def _elastic_net_fwd(x, dictionary, lam1, lam2, num_iterations):
  codes = _solve(x, dictionary, lam1, lam2, num_iterations)
  return codes, (x, dictionary, codes)


def _elastic_net_bwd(lam1, lam2, num_iterations, residuals, cotangent):
  del lam1, num_iterations
  x, dictionary, codes = residuals
  active = (codes != 0).astype(codes.dtype)
  gram = _gram(dictionary, lam2)
  # Per signal, (D_L^T D_L + lam2 I) on the active set and the identity
  # elsewhere: one p x p solve gives beta_L and beta_{L^c} = 0 at once. The
  # system is symmetric positive definite, so a Cholesky solve (half the
  # flops of LU) does it; this solve dominates a TDSC training step.
  system = (active[:, :, None] * gram * active[:, None, :]
            + jax.vmap(jnp.diag)(1 - active))
  beta = jax.scipy.linalg.cho_solve(
      (jnp.linalg.cholesky(system), True), (active * cotangent)[..., None])
  beta = beta[..., 0]
  residual = x - solvers.matmul(codes, dictionary.T)
  x_cotangent = solvers.matmul(beta, dictionary.T)
  dictionary_cotangent = (solvers.matmul(residual.T, beta)
                          - solvers.matmul(dictionary,
                                           solvers.matmul(beta.T, codes)))
  return x_cotangent, dictionary_cotangent


_elastic_net.defvjp(_elastic_net_fwd, _elastic_net_bwd)


def elastic_net_codes(x: jax.Array, dictionary: jax.Array, lam1: float,
                      lam2: float, num_iterations: int = 100) -> jax.Array:
  """Elastic-net codes, differentiable in `x` and `D` by implicit VJP.

  `argmin_a 1/2||x - D a||^2 + lam1 ||a||_1 + lam2/2 ||a||^2` by
  `num_iterations` FISTA steps from zero; the gradient is that of the exact
  solution (module docstring).

  Args:
    x: signals, shape `(..., n)`.
    dictionary: D, shape `(n, p)`.
    lam1: the l1 weight, positive (a Python float: it is static).
    lam2: the ridge weight, positive (static); it makes the solution unique
      and the active-set system well conditioned.
    num_iterations: FISTA iterations.

  Returns:
    Codes of shape `(..., p)`.
  """
  x, dictionary = jnp.asarray(x), jnp.asarray(dictionary)
  if dictionary.ndim != 2 or x.ndim < 1 or x.shape[-1] != dictionary.shape[0]:
    raise ValueError('x must have shape (..., n) and dictionary (n, p); got '
                     f'{x.shape} and {dictionary.shape}.')
  validation.check_positive('lam1', lam1)
  validation.check_positive('lam2', lam2)
  num_iterations = validation.check_int_in_range(
      'num_iterations', num_iterations, 1, 2**31 - 1)
  batch_shape = x.shape[:-1]
  codes = _elastic_net(x.reshape(-1, x.shape[-1]), dictionary, float(lam1),
                       float(lam2), num_iterations)
  return codes.reshape(batch_shape + (dictionary.shape[1],))


class ElasticNetEncoder(nnx.Module):
  """The sparse coding layer of TDSC: elastic-net codes over a learned D.

  `codes = elastic_net_codes(x, D / max(1, ||d_j||), lam1, lam2)`: the
  dictionary is a parameter, its atoms kept in the unit ball.

  Attributes:
    dictionary: D, shape `(signal_dim, code_dim)` (before the rescaling).
    lam1, lam2, num_iterations: as in `elastic_net_codes`.
  """

  def __init__(self, dictionary: jax.Array, *, lam1: float, lam2: float,
               num_iterations: int = 100, param_dtype: Any = None):
    """Starts from `dictionary`, shape `(n, p)` (e.g. a learned one)."""
    dictionary = jnp.asarray(dictionary, param_dtype)
    if dictionary.ndim != 2:
      raise ValueError('dictionary must have shape (signal_dim, code_dim), '
                       f'got {dictionary.shape}.')
    validation.check_finite('dictionary', dictionary)
    validation.check_positive('lam1', lam1)
    validation.check_positive('lam2', lam2)
    self.signal_dim, self.code_dim = (int(size) for size in dictionary.shape)
    self.lam1, self.lam2 = float(lam1), float(lam2)
    self.num_iterations = validation.check_int_in_range(
        'num_iterations', num_iterations, 1, 2**31 - 1)
    self.dictionary = nnx.Param(dictionary)

  def atoms(self) -> jax.Array:
    """The dictionary in use: every atom scaled into the unit ball."""
    dictionary = self.dictionary[...]
    norms = jnp.linalg.norm(dictionary, axis=0, keepdims=True)
    return dictionary / jnp.maximum(norms, 1.0)

  def __call__(self, x: jax.Array) -> jax.Array:
    """The codes `(..., p)` of signals `(..., n)`."""
    x = jnp.asarray(x)
    if x.ndim < 1 or x.shape[-1] != self.signal_dim:
      raise ValueError(f'inputs must have shape (..., {self.signal_dim}), got '
                       f'{x.shape}.')
    return elastic_net_codes(x, self.atoms(), self.lam1, self.lam2,
                             self.num_iterations)
