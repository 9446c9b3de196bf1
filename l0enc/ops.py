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


def _top_k_mask(u: jax.Array, m: int) -> jax.Array:
  """The kept positions of `top_m`, from `lax.top_k` (ties to lower index).

  The definition of the op's tie rule, and the exact fallback of
  `_search_top_m_mask`. It is built from top_k's indices: asking only for
  the m-th largest value makes XLA lower top_k to a full sort, about 9x
  slower on CPU.
  """
  _, indices = jax.lax.top_k(jnp.abs(u), m)
  flat = indices.reshape(-1, m)
  rows = jnp.arange(flat.shape[0])[:, None]
  mask = jnp.zeros((flat.shape[0], u.shape[-1]), bool).at[rows, flat].set(True)
  return mask.reshape(u.shape)


# The threshold search of `_search_top_m_mask`: at most this many counting
# passes, at most this many probes per pass, and the rows left without a
# threshold go to `lax.top_k` in groups of at most `1 + rows //
# _TOP_K_ROWS_DIVISOR` (all rows at once if more are left).
_MAX_SEARCH_PASSES = 10
_MAX_PROBES = 15
_TOP_K_ROWS_DIVISOR = 32


def _count_in_bracket(magnitudes: jax.Array, probes: jax.Array,
                      high: jax.Array, field_bits: jax.Array) -> jax.Array:
  """`counts[r, k] = #{i : probes[r, k] <= magnitudes[r, i] < high[r]}`.

  All K counts come from one pass: the K indicator bits of an entry are
  packed into one int32, `field_bits` bits per probe, and summed along the
  row. XLA's CPU backend runs this one integer row sum about as fast as a
  plain sum, for 3 probes or 15, whereas K sibling reductions run about ten
  times slower. Each count must fit its field (`< 2**field_bits`) and the
  fields the int32 (`K * field_bits <= 31`); probes at +inf count nothing.

  Args:
    magnitudes: shape `(rows, p)`.
    probes: shape `(rows, K)`.
    high: shape `(rows, 1)`; +inf to count everything `>= probes`.
    field_bits: int32 scalar (may be traced).

  Returns:
    int32 counts of shape `(rows, K)`.
  """
  below_high = magnitudes < high
  shifts = field_bits * jnp.arange(probes.shape[-1], dtype=jnp.int32)
  packed = sum(((magnitudes >= probes[:, k:k + 1]) & below_high
                ).astype(jnp.int32) << shifts[k]
               for k in range(probes.shape[-1]))
  totals = jnp.sum(packed, axis=-1, keepdims=True, dtype=jnp.int32)
  return (totals >> shifts) & ((1 << field_bits) - 1)


class _Bracket(NamedTuple):
  """Search state of `_search_top_m_mask`: one entry per row, `(rows, 1)`.

  While a row searches, `count(>= low) = count_low > m > count_high =
  count(>= high)`, so a threshold with exactly m entries at or above it lies
  in `(low, high)`. `found` rows have one in `threshold`; `stuck` rows give
  up (a tie at the maximum, an inf or a NaN) and go to top_k.
  """
  low: jax.Array
  high: jax.Array
  count_low: jax.Array
  count_high: jax.Array
  threshold: jax.Array
  found: jax.Array
  stuck: jax.Array


def _narrow(bracket: _Bracket, probes: jax.Array, counts: jax.Array,
            m: int) -> _Bracket:
  """The bracket after counting `probes` (increasing along the last axis)."""
  low, high, count_low, count_high, threshold, found, stuck = bracket
  searching = ~found & ~stuck
  hit = counts == m
  found_now = searching & jnp.any(hit, axis=-1, keepdims=True)
  threshold = jnp.where(
      found_now, jnp.max(jnp.where(hit, probes, -jnp.inf), -1, keepdims=True),
      threshold)
  # Counts fall as the probes rise: the new bracket runs from the last probe
  # with too many entries to the first with too few.
  above, below = counts > m, counts < m
  update = lambda new, old: jnp.where(searching, new, old)
  new_low = jnp.max(jnp.where(above, probes, low), -1, keepdims=True)
  new_count_low = jnp.min(jnp.where(above, counts, count_low), -1,
                          keepdims=True)
  new_high = jnp.min(jnp.where(below, probes, high), -1, keepdims=True)
  new_count_high = jnp.max(jnp.where(below, counts, count_high), -1,
                           keepdims=True)
  return _Bracket(update(new_low, low), update(new_high, high),
                  update(new_count_low, count_low),
                  update(new_count_high, count_high), threshold,
                  found | found_now, stuck)


# Jitted so that eager calls reuse the compiled search (cached per shape).
@functools.partial(jax.jit, static_argnums=1)
def _top_m_mask(u: jax.Array, m: int) -> jax.Array:
  """The positions `top_m` keeps, equal to `_top_k_mask`.

  On the CPU by a threshold search (`_search_top_m_mask`), about twice as
  fast as top_k there; elsewhere by top_k itself, which accelerators run
  well (and where the search's data-dependent loop would cost a host
  round trip per pass; not measured).
  """
  return jax.lax.platform_dependent(
      u, cpu=lambda u: _search_top_m_mask(u, m),
      default=lambda u: _top_k_mask(u, m))


def _search_top_m_mask(u: jax.Array, m: int) -> jax.Array:
  """The positions `top_m` keeps: equal to `_top_k_mask`, faster on the CPU.

  Per row, a threshold `q` with exactly `m` magnitudes `>= q` selects the
  same set as top_k, ties included (an entry equal to a kept one is `>= q`
  too). Such a `q` exists unless the m-th and (m+1)-th largest magnitudes
  are equal. It is searched for in a bracket that starts as `[0, max |u|]`
  and is split at evenly spaced probes, all counted in one pass over the
  rows (`_count_in_bracket`); as the brackets hold fewer entries the counts
  need fewer bits, so later passes count more probes (up to `_MAX_PROBES`).
  The loop stops as soon as few rows are left; those (ties at the m-th
  value, infs and NaNs, gaps too narrow for the passes made) get their mask
  from top_k on those rows alone (on all rows when more are left), so the
  result never depends on how well the search did.

  Args:
    u: array of shape `(..., p)`.
    m: `1 <= m <= p`.

  Returns:
    A boolean mask of the shape of `u` with exactly `m` True entries per row.
  """
  size = u.shape[-1]
  if m == size:
    return jnp.ones(u.shape, bool)
  rows = u.reshape(-1, size)
  num_rows = rows.shape[0]
  if num_rows == 0:
    return jnp.zeros(u.shape, bool)
  # Magnitudes in a dtype in which the search and the final comparison are
  # exact: bfloat16 and float16 convert to float32 without rounding. They
  # are recomputed inside each pass, which XLA fuses (cheaper than storing).
  search_dtype = jnp.promote_types(rows.dtype, jnp.float32)
  magnitudes = lambda: jnp.abs(rows).astype(search_dtype)
  capacity = 1 + num_rows // _TOP_K_ROWS_DIVISOR
  int32 = lambda value: jnp.asarray(value, jnp.int32)

  # The first pass counts whole rows at (1/K, ..., 1) max |u| (max itself
  # settles m = 1); K fields of bit_length(p) bits fit in an int32.
  full_bits = size.bit_length()
  first_probes = min(_MAX_PROBES, max(1, 31 // full_bits))
  high = jnp.max(magnitudes(), axis=-1, keepdims=True)
  probes = high * (jnp.arange(1, first_probes + 1, dtype=search_dtype)
                   / first_probes)
  counts = _count_in_bracket(magnitudes(), probes, jnp.inf, int32(full_bits))
  none = jnp.zeros_like(high, bool)
  bracket = _narrow(
      _Bracket(jnp.zeros_like(high), jnp.full_like(high, jnp.inf),
               jnp.full(high.shape, size, jnp.int32),
               jnp.zeros(high.shape, jnp.int32), jnp.zeros_like(high), none,
               none), probes, counts, m)
  # Rows with an inf or NaN go to top_k (the bracket counts only finite
  # entries, and top_k ranks NaN first); so do rows in which no probe had
  # fewer than m entries: max |u| itself has more than m (a tie).
  finite = jnp.isfinite(high)
  bracket = bracket._replace(found=bracket.found & finite)
  bracket = bracket._replace(stuck=~bracket.found & (
      jnp.isinf(bracket.high) | ~finite))

  def keep_searching(carry):
    passes, bracket = carry
    left = jnp.sum(~bracket.found, dtype=jnp.int32)
    return ((passes < _MAX_SEARCH_PASSES) & (left > capacity)
            & (jnp.sum(bracket.stuck, dtype=jnp.int32) <= capacity))

  def next_pass(carry):
    passes, bracket = carry
    searching = ~bracket.found & ~bracket.stuck
    # Entries strictly inside the brackets: the widest sets the field size.
    inside = jnp.max(jnp.where(searching,
                               bracket.count_low - bracket.count_high, 0))
    field_bits = jnp.maximum(32 - jax.lax.clz(inside.astype(jnp.int32)), 1)
    num_probes = jnp.minimum(_MAX_PROBES, 31 // field_bits)
    steps = jnp.arange(1, _MAX_PROBES + 1, dtype=jnp.int32)
    fractions = steps.astype(search_dtype) / (num_probes + 1).astype(
        search_dtype)
    probes = jnp.where(
        steps <= num_probes,
        bracket.low + (bracket.high - bracket.low) * fractions, jnp.inf)
    counts = bracket.count_high + _count_in_bracket(
        magnitudes(), probes, bracket.high, field_bits)
    return passes + 1, _narrow(bracket, probes, counts, m)

  _, bracket = jax.lax.while_loop(keep_searching, next_pass, (1, bracket))
  found = bracket.found

  def top_k_for_the_rest():
    # At most `capacity` rows are left: top_k on those alone. Unused slots
    # repeat row 0, whose top_k mask is correct as well.
    (left,) = jnp.nonzero(~found[:, 0], size=capacity, fill_value=0)
    mask = magnitudes() >= bracket.threshold
    return mask.at[left].set(_top_k_mask(rows[left], m))

  mask = jax.lax.cond(jnp.sum(~found, dtype=jnp.int32) <= capacity,
                      top_k_for_the_rest, lambda: _top_k_mask(rows, m))
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
