"""Element-wise thresholds and max-M pooling: the neurons of the encoders.

Every op is a pure function of arrays batched along the last axis (any leading
shape), works in float32 and float64, and composes with `jit`, `vmap` and
`grad`. Equation numbers refer to Wang et al., "Learning Deep l0 Encoders"
(AAAI 2016), ../shared/papers/deep-l0-encoders.txt.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from l0enc import validation


def soft_threshold(u: jax.Array, threshold: jax.Array) -> jax.Array:
  """Soft shrinkage `sign(u) (|u| - threshold)_+`, the LISTA neuron (eq. 5).

  Args:
    u: pre-activations, shape `(..., p)`.
    threshold: positive threshold, broadcastable to `u` (a scalar or one value
      per code entry, shape `(p,)`).

  Returns:
    The shrunk array, same shape and dtype as `u`. Differentiable by plain
    autodiff: d/du is the mask `|u| > threshold`, d/dthreshold is `-sign(u)`
    on that mask.
  """
  validation.check_positive('threshold', threshold)
  return jnp.sign(u) * jnp.maximum(jnp.abs(u) - threshold, 0).astype(u.dtype)


@jax.custom_vjp
def _hard_threshold(u, threshold):
  return jnp.where(jnp.abs(u) >= threshold, u, jnp.zeros_like(u))


def _hard_threshold_fwd(u, threshold):
  keep = jnp.abs(u) >= threshold
  return jnp.where(keep, u, jnp.zeros_like(u)), (keep, threshold)


def _hard_threshold_bwd(residuals, g):
  keep, threshold = residuals
  # The threshold's derivative is zero almost everywhere (a Dirac at the jump
  # otherwise), so it receives a zero cotangent. Learned thresholds are trained
  # through the scaling form theta * helu(u / theta) of the Deep l0 encoder.
  return jnp.where(keep, g, jnp.zeros_like(g)), jnp.zeros_like(threshold)


_hard_threshold.defvjp(_hard_threshold_fwd, _hard_threshold_bwd)


def hard_threshold(u: jax.Array, threshold: jax.Array) -> jax.Array:
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

  Returns:
    The thresholded array, same shape and dtype as `u`.
  """
  validation.check_positive('threshold', threshold)
  threshold = jnp.broadcast_to(jnp.asarray(threshold, u.dtype), u.shape)
  return _hard_threshold(u, threshold)


def helu(u: jax.Array, sigma: jax.Array | float = 0.0) -> jax.Array:
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

  Returns:
    Array of the same shape and dtype as `u`. At sigma = 0 the gradient is the
    mask `|u| >= 1` (as for `hard_threshold`).
  """
  validation.check_nonnegative('sigma', sigma)
  if validation.is_concrete(sigma) and float(sigma) >= 1:
    raise ValueError(f'sigma must be in [0, 1), got {sigma}.')
  sigma = jnp.asarray(sigma, u.dtype)
  exact = _hard_threshold(u, jnp.ones_like(u))
  # A safe denominator keeps the unused ramp branch finite when sigma == 0, so
  # that neither the value nor the gradient picks up NaNs from it.
  safe_sigma = jnp.where(sigma > 0, sigma, jnp.ones_like(sigma))
  magnitude = jnp.abs(u)
  ramp = jnp.sign(u) * (magnitude - 1 + sigma) / safe_sigma
  in_ramp = (magnitude > 1 - sigma) & (magnitude < 1) & (sigma > 0)
  return jnp.where(in_ramp, ramp, exact)


def top_count_mask(u: jax.Array, count: jax.Array | int,
                   max_count: int) -> jax.Array:
  """The `count` entries of largest magnitude per row, as a boolean mask.

  `count` may be traced (one compiled function serves every stage of an
  unrolled encoder whose stages keep different numbers of entries): the
  `max_count` largest entries come from `lax.top_k`, and the first `count`
  of them are marked. Ties in magnitude go to the lower index, as in
  `top_m`. The mask carries no gradient.

  Args:
    u: array of shape `(..., p)`.
    count: the number of entries to mark, `0 <= count <= max_count`; an int
      or an integer scalar array (may be traced).
    max_count: a Python int, `0 <= max_count <= p`.

  Returns:
    A boolean array shaped like `u` with `min(count, max_count)` True
    entries per row.
  """
  max_count = validation.check_int_in_range('max_count', max_count, 0,
                                            u.shape[-1])
  if validation.is_concrete(count):
    validation.check_int_in_range('count', int(count), 0, max_count)
  if max_count == 0:
    return jnp.zeros(u.shape, bool)
  _, indices = jax.lax.top_k(jax.lax.stop_gradient(jnp.abs(u)), max_count)
  flat = indices.reshape(-1, max_count)
  rows = jnp.arange(flat.shape[0])[:, None]
  kept = jnp.broadcast_to(jnp.arange(max_count) < count, flat.shape)
  mask = jnp.zeros((flat.shape[0], u.shape[-1]), bool).at[rows, flat].set(
      kept)
  return mask.reshape(u.shape)


def support_selection_counts(num_stages: int, code_dim: int, *,
                             percent: float = 1.2,
                             max_percent: float = 13.0) -> tuple[int, ...]:
  """Entries that pass unshrunk in each stage (Chen et al. 2018, Sec. 3.2).

  Stage k (1-based) trusts the `p_k = min(k * percent, max_percent)` percent
  of entries of largest magnitude as support; the defaults are the
  LISTA-CPSS and ALISTA codes' (1.2 % more per stage, at most 13 %, for
  codes with 10 % nonzeros).

  Args:
    num_stages: K >= 1.
    code_dim: p, the length of the codes.
    percent: the growth of p_k per stage, in percent, >= 0.
    max_percent: the cap of p_k, in [0, 100].

  Returns:
    `(count_1, ..., count_K)`, `count_k = round(p_k / 100 * code_dim)`.
  """
  num_stages = validation.check_int_in_range('num_stages', num_stages, 1,
                                             2**31 - 1)
  code_dim = validation.check_int_in_range('code_dim', code_dim, 1, 2**31 - 1)
  validation.check_nonnegative('percent', percent)
  validation.check_nonnegative('max_percent', max_percent)
  if max_percent > 100:
    raise ValueError(f'max_percent must be in [0, 100], got {max_percent}.')
  return tuple(int(round(min(k * percent, max_percent) / 100 * code_dim))
               for k in range(1, num_stages + 1))


def soft_threshold_ss(u: jax.Array, threshold: jax.Array,
                      count: jax.Array | int, max_count: int) -> jax.Array:
  """Soft threshold with support selection (LISTA-CPSS, Chen et al. 2018).

      [eta^ss(u)]_i = u_i                         if i in S(u) and |u_i| > theta
                      sign(u_i)(|u_i| - theta)_+  otherwise,

  where S(u) holds the `count` entries of largest magnitude
  (`top_count_mask`): entries trusted to be in the support are not shrunk,
  which removes the bias of the soft threshold on them.

  Args:
    u: pre-activations, shape `(..., p)`.
    threshold: positive threshold broadcastable to `u`.
    count: entries selected per row (may be traced), `<= max_count`.
    max_count: a Python int, the largest `count` used.

  Returns:
    Array shaped like `u`. The gradient w.r.t. `u` is 1 on the selected
    entries and that of the soft threshold elsewhere.
  """
  selected = top_count_mask(u, count, max_count) & (jnp.abs(u) > threshold)
  return jnp.where(selected, u, soft_threshold(u, threshold))


def helu_ss(u: jax.Array, sigma: jax.Array | float, count: jax.Array | int,
            max_count: int) -> jax.Array:
  """HELU_sigma (eq. 9) with support selection: the largest entries pass.

  The `count` entries of largest magnitude (`top_count_mask`) are kept as
  they are, whatever their size; the others go through HELU_sigma. For a
  hard threshold the soft-threshold rule of `soft_threshold_ss` (select only
  entries above the threshold) would change nothing at sigma = 0, since
  such entries already pass unchanged; what support selection adds here is
  that entries trusted to be in the support survive a threshold set for
  the rest.

  Args:
    u: pre-activations divided by the thresholds, shape `(..., p)`.
    sigma: ramp width in [0, 1) (may be traced).
    count: entries selected per row (may be traced), `<= max_count`.
    max_count: a Python int, the largest `count` used.

  Returns:
    Array shaped like `u`; the gradient w.r.t. `u` is 1 on the selected
    entries and that of HELU_sigma elsewhere.
  """
  selected = top_count_mask(u, count, max_count)
  return jnp.where(selected, u, helu(u, sigma))


def top_m_upto(u: jax.Array, m: jax.Array | int, max_m: int) -> jax.Array:
  """`h_M` with a traced M: keeps the `m` entries of largest magnitude.

  Equals `top_m(u, m)` (values, ties and gradient: each kept position gets
  its full incoming gradient), for an `m` that may change from stage to
  stage inside one `lax.scan`.

  Args:
    u: array of shape `(..., p)`.
    m: entries kept per row, `0 <= m <= max_m` (may be traced).
    max_m: a Python int, the largest `m` used, `<= p`.

  Returns:
    Array shaped like `u`.
  """
  return jnp.where(top_count_mask(u, m, max_m), u, jnp.zeros_like(u))


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
  m = _check_m(u, m)
  _, indices = jax.lax.top_k(jnp.abs(u), m)
  return MaxMPooled(jnp.take_along_axis(u, indices, axis=-1), indices)


def max_m_unpool(pooled: MaxMPooled, size: int) -> jax.Array:
  """max-M unpooling: scatters `pooled.values` back to a length-`size` axis.

  Args:
    pooled: output of `max_m_pool`.
    size: length `p` of the last axis of the result.

  Returns:
    Array of shape `(..., size)`, zero outside `pooled.indices`.
  """
  values, indices = pooled
  if values.shape != indices.shape:
    raise ValueError(f'values {values.shape} and indices {indices.shape} must '
                     'have the same shape.')
  validation.check_int_in_range('size', size, values.shape[-1], 2**31 - 1)
  one_hot = jax.nn.one_hot(indices, size, dtype=values.dtype)
  return jnp.einsum('...m,...mp->...p', values, one_hot)


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
  return _top_m(u, _check_m(u, m))
