"""Element-wise thresholds and max-M pooling: the neurons of the encoders.

Every op is a pure function of arrays batched along the last axis (any leading
shape), works in float32, float64 and bfloat16 (integer inputs and nested
lists are cast to float, complex ones refused), and composes with `jit`,
`vmap` and `grad`. NaN inputs give NaN outputs. Thresholds and sigma are
checked eagerly (a `ValueError`); when they are traced, an invalid value
makes the output NaN and fails under `checkify` (`l0enc.validation`).
`validate=False` skips the value checks, for learned parameters whose values
are training outcomes (LISTA's thresholds). Equation numbers refer to Wang et al., "Learning Deep l0 Encoders"
(AAAI 2016), ../shared/papers/deep-l0-encoders.txt.
"""

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from l0enc import validation


def _check_threshold(threshold, validate):
  """Raises for a concrete non-positive `threshold` (see the module)."""
  if validate:
    validation.check_positive('threshold', threshold)


def _guard_traced_threshold(threshold, result, validate):
  """`result`, NaN where a traced `threshold` is not positive."""
  if not validate or validation.is_concrete(threshold):
    return result
  return validation.nan_unless(
      validation.is_positive_and_finite(threshold), result,
      'threshold must be positive and finite, got {threshold}.',
      threshold=threshold)


def soft_threshold(u: jax.Array, threshold: jax.Array, *,
                   validate: bool = True) -> jax.Array:
  """Soft shrinkage `sign(u) (|u| - threshold)_+`, the LISTA neuron (eq. 5).

  Args:
    u: pre-activations, shape `(..., p)`.
    threshold: positive threshold, broadcastable to `u` (a scalar or one value
      per code entry, shape `(p,)`).
    validate: check that the threshold is positive (see the module).

  Returns:
    The shrunk array, same shape and dtype as `u`. Differentiable by plain
    autodiff: d/du is the mask `|u| > threshold`, d/dthreshold is `-sign(u)`
    on that mask.
  """
  u = validation.as_float_array('u', u, allow_bfloat16=True)
  _check_threshold(threshold, validate)
  shrunk = jnp.sign(u) * jnp.maximum(jnp.abs(u) - threshold, 0).astype(u.dtype)
  return _guard_traced_threshold(threshold, shrunk, validate)


# Written as "zero where |u| < theta" rather than "u where |u| >= theta": both
# comparisons are false for NaN, and this way a NaN input stays NaN instead of
# becoming a plausible zero.
@jax.custom_vjp
def _hard_threshold(u, threshold):
  return jnp.where(jnp.abs(u) < threshold, jnp.zeros_like(u), u)


def _hard_threshold_fwd(u, threshold):
  keep = ~(jnp.abs(u) < threshold)
  return jnp.where(keep, u, jnp.zeros_like(u)), (keep, threshold)


def _hard_threshold_bwd(residuals, g):
  keep, threshold = residuals
  # The threshold's derivative is zero almost everywhere (a Dirac at the jump
  # otherwise), so it receives a zero cotangent. Learned thresholds are trained
  # through the scaling form theta * helu(u / theta) of the Deep l0 encoder.
  return jnp.where(keep, g, jnp.zeros_like(g)), jnp.zeros_like(threshold)


_hard_threshold.defvjp(_hard_threshold_fwd, _hard_threshold_bwd)


def hard_threshold(u: jax.Array, threshold: jax.Array, *,
                   validate: bool = True) -> jax.Array:
  """Hard threshold `h_theta`: keeps `u_i` where `|u_i| >= theta_i` (eq. 7).

  The gradient w.r.t. `u` is the mask of kept entries (straight through on
  the kept set, zero elsewhere). The threshold receives a zero gradient: the
  function is piecewise constant in `theta`. To learn thresholds, use the
  HELU form `theta * helu(u / theta, sigma)` (Fig. 3), where `theta` gets its
  gradient through the two scaling layers.

  Args:
    u: pre-activations, shape `(..., p)`.
    threshold: positive threshold broadcastable to `u`. For IHT on problem (1)
      with step size mu it is `sqrt(2 * lam * mu)` (see `l0enc.solvers`).
    validate: check that the threshold is positive (see the module).

  Returns:
    The thresholded array, same shape and dtype as `u`.
  """
  u = validation.as_float_array('u', u, allow_bfloat16=True)
  _check_threshold(threshold, validate)
  broadcast = jnp.broadcast_to(jnp.asarray(threshold, u.dtype), u.shape)
  return _guard_traced_threshold(threshold, _hard_threshold(u, broadcast),
                                 validate)


def helu(u: jax.Array, sigma: jax.Array | float = 0.0, *,
         validate: bool = True) -> jax.Array:
  """HELU_sigma of eq. (9); the exact unit hard threshold (HELU) at sigma = 0.

      HELU_sigma(u) = 0                          if |u| <= 1 - sigma
                      (u - 1 + sigma) / sigma    if 1 - sigma < u < 1
                      (u + 1 - sigma) / sigma    if -1 < u < sigma - 1
                      u                          if |u| >= 1

  HELU_sigma is continuous and piecewise linear (slope 1/sigma on the ramps),
  which makes the discontinuous HELU trainable by SGD; the encoders anneal
  sigma from 0.2 towards 0 during training and evaluate with sigma = 0.

  Args:
    u: pre-activations (already divided by the thresholds), shape `(..., p)`.
    sigma: ramp width in [0, 1); may be a traced scalar, so it can be annealed
      inside a jitted train step without recompiling.
    validate: check that sigma is in [0, 1) (see the module).

  Returns:
    Array of the same shape and dtype as `u`. At sigma = 0 the gradient is the
    mask `|u| >= 1` (as for `hard_threshold`).
  """
  u = validation.as_float_array('u', u, allow_bfloat16=True)
  traced_sigma = validate and not validation.is_concrete(sigma)
  if validate and not traced_sigma:
    validation.check_nonnegative('sigma', sigma)
    if float(sigma) >= 1:
      raise ValueError(f'sigma must be in [0, 1), got {sigma}.')
  given_sigma = sigma
  sigma = jnp.asarray(sigma, u.dtype)
  exact = _hard_threshold(u, jnp.ones_like(u))
  # A safe denominator keeps the unused ramp branch finite when sigma == 0, so
  # that neither the value nor the gradient picks up NaNs from it.
  safe_sigma = jnp.where(sigma > 0, sigma, jnp.ones_like(sigma))
  magnitude = jnp.abs(u)
  ramp = jnp.sign(u) * (magnitude - 1 + sigma) / safe_sigma
  in_ramp = (magnitude > 1 - sigma) & (magnitude < 1) & (sigma > 0)
  result = jnp.where(in_ramp, ramp, exact)
  if traced_sigma:
    result = validation.nan_unless((sigma >= 0) & (sigma < 1), result,
                                   'sigma must be in [0, 1), got {sigma}.',
                                   sigma=given_sigma)
  return result


class MaxMPooled(NamedTuple):
  """Output of max-M pooling (eq. 11).

  Attributes:
    values: the M kept entries (signed), shape `(..., m)`, in decreasing order
      of magnitude.
    indices: their positions along the last axis, shape `(..., m)`, int32.
  """
  values: jax.Array
  indices: jax.Array


def _check_m(u: jax.Array, m: int) -> int:
  return validation.check_int_in_range('m', m, 1, u.shape[-1])


def _check_u(u: Any) -> jax.Array:
  u = validation.as_float_array('u', u, allow_bfloat16=True)
  validation.check_rank_at_least('u', u, 1)
  return u


def max_m_pool(u: jax.Array, m: int) -> MaxMPooled:
  """max-M pooling: the M entries of largest magnitude and their switches.

  Ties in magnitude are broken towards the lower index (the order of
  `lax.top_k`), so the result is deterministic.

  Args:
    u: array of shape `(..., p)`.
    m: number of entries to keep, `1 <= m <= p` (a Python int).

  Returns:
    `MaxMPooled(values, indices)`, each of shape `(..., m)`.
  """
  u = _check_u(u)
  m = _check_m(u, m)
  _, indices = jax.lax.top_k(jnp.abs(u), m)
  return MaxMPooled(jnp.take_along_axis(u, indices, axis=-1), indices)


def max_m_unpool(pooled: MaxMPooled, size: int) -> jax.Array:
  """max-M unpooling: scatters `pooled.values` back to a length-`size` axis.

  Args:
    pooled: output of `max_m_pool`.
    size: length `p` of the last axis of the result.

  Returns:
    Array of shape `(..., size)`, zero outside `pooled.indices`. Indices
    outside `[0, size)` raise a `ValueError` (concrete indices) or make the
    result NaN (traced ones; see the module).
  """
  values, indices = pooled
  values = validation.as_float_array('pooled.values', values,
                                     allow_bfloat16=True)
  indices = jnp.asarray(indices)
  if values.shape != indices.shape:
    raise ValueError(f'values {values.shape} and indices {indices.shape} must '
                     'have the same shape.')
  if not jnp.issubdtype(indices.dtype, jnp.integer):
    raise ValueError(f'pooled.indices must be integers, got {indices.dtype}.')
  size = validation.check_int_in_range('size', size, values.shape[-1],
                                       2**31 - 1)
  if validation.is_concrete(indices) and indices.size:
    with jax.ensure_compile_time_eval():
      low, high = int(jnp.min(indices)), int(jnp.max(indices))
    if low < 0 or high >= size:
      raise ValueError(f'size={size} must exceed every index of '
                       f'pooled.indices, which span [{low}, {high}].')
  one_hot = jax.nn.one_hot(indices, size, dtype=values.dtype)
  result = jnp.einsum('...m,...mp->...p', values, one_hot)
  if not validation.is_concrete(indices):
    in_range = jnp.all((indices >= 0) & (indices < size), axis=-1,
                       keepdims=True)
    result = validation.nan_unless(
        in_range, result, f'size={size} must exceed every index of '
        'pooled.indices.')
  return result


def _top_m_mask(u: jax.Array, m: int) -> jax.Array:
  # The mask is built from top_k's indices: asking only for the m-th largest
  # value makes XLA lower top_k to a full sort, about 9x slower on CPU.
  _, indices = jax.lax.top_k(jnp.abs(u), m)
  flat = indices.reshape(-1, m)
  rows = jnp.arange(flat.shape[0])[:, None]
  mask = jnp.zeros((flat.shape[0], u.shape[-1]), bool).at[rows, flat].set(True)
  return mask.reshape(u.shape)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _top_m(u, m):
  return jnp.where(_top_m_mask(u, m), u, jnp.zeros_like(u))


def _top_m_fwd(u, m):
  mask = _top_m_mask(u, m)
  return jnp.where(mask, u, jnp.zeros_like(u)), mask


def _top_m_bwd(m, mask, g):
  del m
  return (jnp.where(mask, g, jnp.zeros_like(g)),)


_top_m.defvjp(_top_m_fwd, _top_m_bwd)


def top_m(u: jax.Array, m: int) -> jax.Array:
  """`h_M`: max-M pooling followed by unpooling (eqs. 10-11).

  Keeps exactly the `m` entries of largest magnitude (ties towards the lower
  index) and zeros the rest, so the result has at most `m` nonzeros (fewer
  only when `u` itself has fewer). In the backward pass each kept position
  receives its full incoming gradient and the others none.

  Args:
    u: array of shape `(..., p)`.
    m: sparsity level, a Python int with `1 <= m <= p`.

  Returns:
    Array of the same shape and dtype as `u`.
  """
  u = _check_u(u)
  return _top_m(u, _check_m(u, m))
