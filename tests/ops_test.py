"""Tests of l0enc.ops against plain NumPy references."""

import re

import chex
import jax
from jax.experimental import checkify
import jax.numpy as jnp
import numpy as np
import pytest

from l0enc import ops
from references import np_top_m

DTYPES = [jnp.float32, jnp.float64]


@pytest.fixture(autouse=True)
def _enable_x64():
  with jax.enable_x64(True):
    yield


def _random(shape, dtype, seed=0):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), dtype)


# NumPy references, written independently of the library.


def np_soft(u, t):
  return np.sign(u) * np.maximum(np.abs(u) - t, 0)


def np_hard(u, t):
  return np.where(np.abs(u) >= t, u, 0)


def np_helu(u, sigma):
  out = np.zeros_like(u)
  for i, v in np.ndenumerate(u):
    if abs(v) >= 1:
      out[i] = v
    elif sigma > 0 and 1 - sigma < v < 1:
      out[i] = (v - 1 + sigma) / sigma
    elif sigma > 0 and -1 < v < sigma - 1:
      out[i] = (v + 1 - sigma) / sigma
  return out


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('shape', [(7,), (4, 9), (2, 3, 6)])
def test_soft_and_hard_threshold_values(dtype, shape):
  u = _random(shape, dtype)
  threshold = jnp.asarray(np.linspace(0.2, 1.0, shape[-1]), dtype)
  soft = ops.soft_threshold(u, threshold)
  hard = ops.hard_threshold(u, threshold)
  chex.assert_type([soft, hard], dtype)
  chex.assert_shape([soft, hard], shape)
  np.testing.assert_allclose(soft, np_soft(np.asarray(u), threshold), rtol=1e-6)
  np.testing.assert_array_equal(hard, np_hard(np.asarray(u), threshold))


# Support selection (LISTA-CPSS) and M per stage: a traced count of entries.


def np_selected(u, count):
  """The `count` largest magnitudes per row, ties to the lower index."""
  order = np.argsort(-np.abs(u), axis=-1, kind='stable')[..., :count]
  mask = np.zeros(u.shape, bool)
  np.put_along_axis(mask, order, True, -1)
  return mask


def np_soft_ss(u, threshold, count):
  """Chen et al. (2018), eq. (14): selected entries above theta pass."""
  keep = np_selected(u, count) & (np.abs(u) > threshold)
  return np.where(keep, u, np_soft(u, threshold))


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('count', [0, 1, 3, 6])
@pytest.mark.parametrize('shape', [(9,), (4, 9), (2, 3, 9)])
def test_support_selection_ops_match_numpy(dtype, count, shape):
  u = _random(shape, dtype)
  u_np = np.asarray(u)
  threshold, max_count = 0.5, 6
  traced = jax.jit(lambda u, c: ops.soft_threshold_ss(u, threshold, c,
                                                      max_count))
  for result in (ops.soft_threshold_ss(u, threshold, count, max_count),
                 traced(u, jnp.asarray(count))):
    chex.assert_type(result, dtype)
    np.testing.assert_allclose(result, np_soft_ss(u_np, threshold, count),
                               rtol=1e-6)
  helu_ss = ops.helu_ss(u, 0.2, count, max_count)
  np.testing.assert_allclose(
      helu_ss, np.where(np_selected(u_np, count), u_np,
                        np_helu(u_np.ravel(), 0.2).reshape(shape)),
      rtol=1e-6)
  if count:
    np.testing.assert_array_equal(ops.top_m_upto(u, count, max_count),
                                  np_top_m(u_np, count))
    np.testing.assert_array_equal(ops.top_m_upto(u, count, max_count),
                                  ops.top_m(u, count))


def test_support_selection_differs_from_the_plain_neurons():
  u = jnp.asarray([[3.0, -0.4, 0.9, 0.1, -2.0]])
  # Soft: 3.0 and -2.0 selected and above the threshold 0.5: not shrunk.
  np.testing.assert_allclose(ops.soft_threshold_ss(u, 0.5, 2, 2),
                             [[3.0, 0.0, 0.4, 0.0, -2.0]])
  # HELU: the selected 0.9 passes although below the unit threshold.
  np.testing.assert_allclose(ops.helu_ss(u, 0.0, 3, 3),
                             [[3.0, 0.0, 0.9, 0.0, -2.0]])


def test_top_count_mask_ties_go_to_the_lower_index():
  u = jnp.asarray([[1.0, -2.0, 2.0, 2.0, 0.5]])
  np.testing.assert_array_equal(ops.top_count_mask(u, 2, 4),
                                [[False, True, True, False, False]])


@pytest.mark.parametrize('name', ['soft', 'helu', 'top_m'])
def test_support_selection_gradients(name):
  u = _random((3, 8), jnp.float64)
  fn = {'soft': lambda u: ops.soft_threshold_ss(u, 0.3, 2, 4),
        'helu': lambda u: ops.helu_ss(u, 0.2, 2, 4),
        'top_m': lambda u: ops.top_m_upto(u, 2, 4)}[name]
  cotangent = _random((3, 8), jnp.float64, seed=5)
  gradient = jax.grad(lambda u: jnp.sum(fn(u) * cotangent))(u)
  chex.assert_tree_all_finite(gradient)
  selected = np_selected(np.asarray(u), 2)
  if name != 'soft':
    # Selected entries pass: gradient 1 there (times the cotangent).
    np.testing.assert_allclose(np.asarray(gradient)[selected],
                               np.asarray(cotangent)[selected])
  # Away from kinks the gradient is that of the forward function.
  step = 1e-6
  direction = _random((3, 8), jnp.float64, seed=7)
  numeric = (jnp.sum(fn(u + step * direction) * cotangent)
             - jnp.sum(fn(u - step * direction) * cotangent)) / (2 * step)
  np.testing.assert_allclose(jnp.sum(gradient * direction), numeric,
                             rtol=1e-5)


def test_support_selection_counts_grow_and_saturate():
  assert ops.support_selection_counts(16, 500) == tuple(
      round(min(1.2 * k, 13.0) * 5) for k in range(1, 17))
  assert ops.support_selection_counts(3, 500)[:3] == (6, 12, 18)
  assert ops.support_selection_counts(16, 500)[-1] == 65


@pytest.mark.parametrize('call,match', [
    (lambda: ops.top_count_mask(jnp.ones(4), 3, 2), 'count'),
    (lambda: ops.top_count_mask(jnp.ones(4), 1, 5), 'max_count'),
    (lambda: ops.support_selection_counts(4, 10, max_percent=101),
     'max_percent'),
    (lambda: ops.support_selection_counts(0, 10), 'num_stages'),
])
def test_support_selection_bad_input_raises(call, match):
  with pytest.raises(ValueError, match=match):
    call()


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('sigma', [0.0, 0.02, 0.2, 0.5])
def test_helu_matches_eq9(dtype, sigma):
  u = jnp.asarray(np.linspace(-1.6, 1.6, 161), dtype)
  out = ops.helu(u, sigma)
  chex.assert_type(out, dtype)
  np.testing.assert_allclose(out, np_helu(np.asarray(u, np.float64), sigma),
                             atol=1e-5 if dtype == jnp.float32 else 1e-12)


def test_helu_is_continuous_for_positive_sigma_and_equals_helu_at_zero():
  u = jnp.linspace(-2, 2, 40001, dtype=jnp.float64)
  out = np.asarray(ops.helu(u, 0.2))
  assert np.max(np.abs(np.diff(out))) < 1e-4 / 0.2 * 2
  np.testing.assert_array_equal(ops.helu(u, 0.0), ops.hard_threshold(u, 1.0))


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('shape,m', [((10,), 3), ((5, 12), 1), ((5, 12), 12),
                                      ((2, 3, 8), 4)])
def test_top_m_keeps_exactly_m_and_matches_reference(dtype, shape, m):
  u = _random(shape, dtype, seed=m)
  out = ops.top_m(u, m)
  chex.assert_type(out, dtype)
  np.testing.assert_array_equal(out, np_top_m(np.asarray(u), m))
  np.testing.assert_array_equal(np.count_nonzero(out, axis=-1), m)


def test_top_m_breaks_ties_towards_lower_index_and_keeps_fewer_if_sparse():
  u = jnp.array([[1.0, -1.0, 1.0, 0.5], [0.0, 0.0, 2.0, 0.0]])
  np.testing.assert_array_equal(
      ops.top_m(u, 2), [[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0]])


# The threshold search of top_m against the op it replaced: lax.top_k's
# indices scattered into a mask (kept here verbatim as the reference).


def _top_k_top_m(u, m):
  """The former `ops.top_m`: its values, and through `jnp.where` its VJP."""
  _, indices = jax.lax.top_k(jnp.abs(u), m)
  flat = indices.reshape(-1, m)
  rows = jnp.arange(flat.shape[0])[:, None]
  mask = jnp.zeros((flat.shape[0], u.shape[-1]), bool).at[rows, flat].set(True)
  return jnp.where(mask.reshape(u.shape), u, jnp.zeros_like(u))


def _inputs(kind, shape, dtype, seed=0):
  rng = np.random.default_rng(seed)
  if kind == 'normal':
    u = rng.normal(size=shape)
  elif kind == 'cauchy':  # heavy tails: the search needs many passes
    u = rng.standard_cauchy(size=shape)
  elif kind == 'small_integers':  # ties everywhere, also at the m-th value
    u = rng.integers(-3, 4, size=shape).astype(float)
  elif kind == 'all_equal':
    u = np.where(rng.random(shape) < 0.5, -1.5, 1.5)
  elif kind == 'zero_rows':  # all-zero rows between normal ones
    u = rng.normal(size=shape) * (rng.random(shape[:-1] + (1,)) < 0.5)
  elif kind == 'sparse':  # fewer nonzeros than m in most rows: ties at 0
    u = rng.normal(size=shape) * (rng.random(shape) < 0.05)
  elif kind == 'signed_zeros_and_tiny':
    u = rng.choice([0.0, -0.0, 1e-40, -1e-40, 2e-45, 1.0], size=shape)
  elif kind == 'nonfinite':  # rows with inf, -inf and NaN among normal ones
    u = rng.normal(size=shape)
    flat = u.reshape(-1, shape[-1])
    flat[::3, 1] = np.inf
    flat[1::3, 2] = -np.inf
    flat[2::5, 0] = np.nan
  else:
    raise ValueError(kind)
  return jnp.asarray(u, dtype)


# One case per kind of input, each with its own dtype and m (every
# compilation of the search costs about a second), plus the special shapes.
TOP_M_CASES = [
    ('normal', jnp.float32, (300, 64), 7),
    ('normal', jnp.float64, (2, 3, 50), 10),
    ('normal', jnp.bfloat16, (9,), 4),
    ('normal', jnp.float32, (300, 64), 64),  # M = p
    ('cauchy', jnp.float64, (300, 64), 32),
    ('small_integers', jnp.float32, (300, 64), 7),
    ('small_integers', jnp.bfloat16, (300, 64), 1),  # M = 1
    ('all_equal', jnp.float32, (300, 64), 63),
    ('zero_rows', jnp.float32, (300, 64), 7),
    ('sparse', jnp.float64, (300, 64), 7),
    ('signed_zeros_and_tiny', jnp.float32, (300, 64), 7),
    ('nonfinite', jnp.float32, (300, 64), 7),
]


@pytest.mark.parametrize('kind,dtype,shape,m', TOP_M_CASES)
def test_top_m_equals_top_k_op_in_values_and_gradients(kind, dtype, shape, m):
  u = _inputs(kind, shape, dtype, seed=m)
  g = _random(shape, dtype, seed=m + 1)
  out, pullback = jax.vjp(lambda v: ops.top_m(v, m), u)
  ref, ref_pullback = jax.vjp(lambda v: _top_k_top_m(v, m), u)
  chex.assert_type(out, dtype)
  as64 = lambda a: np.asarray(a, np.float64)
  np.testing.assert_array_equal(as64(out), as64(ref))
  np.testing.assert_array_equal(as64(pullback(g)[0]), as64(ref_pullback(g)[0]))
  # Bitwise, so -0.0 and +0.0 are told apart.
  np.testing.assert_array_equal(np.signbit(as64(out)), np.signbit(as64(ref)))


@pytest.mark.parametrize('max_passes,divisor', [(1, 32), (2, 4), (10, 1000)])
def test_top_m_is_exact_on_every_path_of_the_search(monkeypatch, max_passes,
                                                    divisor):
  # Few passes leave many rows to top_k (all rows at once beyond the
  # capacity of 1 + rows // divisor); many passes leave few or none.
  monkeypatch.setattr(ops, '_MAX_SEARCH_PASSES', max_passes)
  monkeypatch.setattr(ops, '_TOP_K_ROWS_DIVISOR', divisor)
  # The constants are read when the jitted search is traced.
  ops._top_m_mask.clear_cache()
  u = jnp.concatenate([_inputs(kind, (200, 128), jnp.float32)
                       for kind in ('normal', 'cauchy', 'small_integers')])
  try:
    np.testing.assert_array_equal(ops.top_m(u, 40), _top_k_top_m(u, 40))
  finally:
    ops._top_m_mask.clear_cache()


def test_top_m_under_vmap_equals_batched():
  u = _inputs('small_integers', (4, 30, 16), jnp.float32)
  np.testing.assert_array_equal(jax.vmap(lambda v: ops.top_m(v, 5))(u),
                                ops.top_m(u, 5))


def test_max_m_pool_unpool_round_trip():
  u = _random((3, 4, 10), jnp.float32)
  pooled = ops.max_m_pool(u, 4)
  chex.assert_shape([pooled.values, pooled.indices], (3, 4, 4))
  np.testing.assert_array_equal(ops.max_m_unpool(pooled, 10), ops.top_m(u, 4))
  # Pooled values come in decreasing order of magnitude.
  assert np.all(np.diff(np.abs(np.asarray(pooled.values)), axis=-1) <= 0)


# Gradients.


def _vjp(fn, u, cotangent):
  _, pullback = jax.vjp(fn, u)
  return pullback(cotangent)[0]


@pytest.mark.parametrize('dtype', DTYPES)
def test_hard_threshold_gradient_is_mask(dtype):
  u = _random((6, 8), dtype)
  g = _random((6, 8), dtype, seed=1)
  threshold = 0.7
  grad_u = _vjp(lambda v: ops.hard_threshold(v, threshold), u, g)
  # Reference: autodiff of a plain jnp.where implementation.
  ref = _vjp(lambda v: jnp.where(jnp.abs(v) >= threshold, v, 0.0), u, g)
  np.testing.assert_array_equal(grad_u, ref)
  grad_t = jax.grad(lambda t: ops.hard_threshold(u, t).sum())(
      jnp.asarray(threshold, dtype))
  assert grad_t == 0


@pytest.mark.parametrize('m', [1, 3, 8])
def test_top_m_gradient_passes_full_gradient_on_kept_positions(m):
  u = _random((5, 8), jnp.float64, seed=2)
  g = _random((5, 8), jnp.float64, seed=3)
  grad = _vjp(lambda v: ops.top_m(v, m), u, g)
  mask = np_top_m(np.asarray(u), m) != 0
  np.testing.assert_array_equal(grad, np.where(mask, g, 0))
  # Same as autodiff through the (gather/scatter) pool-unpool pair.
  ref = _vjp(lambda v: ops.max_m_unpool(ops.max_m_pool(v, m), 8), u, g)
  np.testing.assert_allclose(grad, ref)


def _finite_difference_check(fn, u, eps=1e-6):
  """Central differences of sum(fn * weights) against jax.grad."""
  weights = np.random.default_rng(4).normal(size=u.shape)
  scalar = lambda v: jnp.sum(fn(v) * weights)
  grad = np.asarray(jax.grad(scalar)(u))
  numeric = np.zeros_like(grad)
  for i in np.ndindex(u.shape):
    step = np.zeros(u.shape)
    step[i] = eps
    numeric[i] = (scalar(u + step) - scalar(u - step)) / (2 * eps)
  np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('name', ['hard', 'top_m', 'soft', 'helu_sigma'])
def test_gradients_match_finite_differences_away_from_kinks(name):
  # Away from the kinks (|u| = 1, and 1 - sigma = 0.7 for HELU_0.3) every op
  # is locally linear, so finite
  # differences are exact up to rounding.
  rng = np.random.default_rng(5)
  u = rng.uniform(0.05, 2.0, size=(3, 7)) * rng.choice([-1, 1], size=(3, 7))
  u = np.where(np.abs(np.abs(u) - 1.0) < 0.05, 1.5 * np.sign(u), u)
  u = np.where(np.abs(np.abs(u) - 0.7) < 0.05, 0.85 * np.sign(u), u)
  fn = {
      'hard': lambda v: ops.hard_threshold(v, 1.0),
      'top_m': lambda v: ops.top_m(v, 3),
      'soft': lambda v: ops.soft_threshold(v, 1.0),
      'helu_sigma': lambda v: ops.helu(v, 0.3),
  }[name]
  _finite_difference_check(fn, jnp.asarray(u))


def test_helu_gradient_in_sigma_matches_finite_differences():
  u = jnp.asarray([0.75, -0.9, 0.95, 1.2, -0.3], jnp.float64)
  f = lambda s: jnp.sum(ops.helu(u, s) * jnp.arange(1.0, 6.0))
  sigma, eps = 0.3, 1e-6
  numeric = (f(sigma + eps) - f(sigma - eps)) / (2 * eps)
  np.testing.assert_allclose(jax.grad(f)(sigma), numeric, rtol=1e-6)


@pytest.mark.parametrize('transform', ['jit', 'vmap', 'grad'])
@pytest.mark.parametrize('name', ['soft', 'hard', 'helu', 'top_m'])
def test_ops_under_transformations(transform, name):
  fn = {
      'soft': lambda v: ops.soft_threshold(v, 0.5),
      'hard': lambda v: ops.hard_threshold(v, 0.5),
      'helu': lambda v: ops.helu(v, 0.1),
      'top_m': lambda v: ops.top_m(v, 3),
  }[name]
  u = _random((4, 6), jnp.float32)
  if transform == 'jit':
    np.testing.assert_allclose(jax.jit(fn)(u), fn(u), rtol=1e-6)
  elif transform == 'vmap':
    np.testing.assert_allclose(jax.vmap(fn)(u), fn(u), rtol=1e-6)
  else:
    per_row = jax.vmap(jax.grad(lambda row: jnp.sum(fn(row) ** 2)))(u)
    whole = jax.grad(lambda v: jnp.sum(fn(v) ** 2))(u)
    np.testing.assert_allclose(per_row, whole)


def test_sigma_can_change_under_jit_without_recompiling():
  f = jax.jit(ops.helu)
  u = jnp.linspace(-1, 1, 11)
  f(u, 0.2)
  f(u, 0.02)
  assert f._cache_size() == 1


@pytest.mark.parametrize('call,match', [
    (lambda: ops.top_m(jnp.ones((2, 5)), 6), 'm'),
    (lambda: ops.top_m(jnp.ones((2, 5)), 0), 'm'),
    (lambda: ops.top_m(jnp.ones((2, 5)), 2.5), 'm'),
    (lambda: ops.max_m_pool(jnp.ones((5,)), 9), 'm'),
    (lambda: ops.hard_threshold(jnp.ones(3), 0.0), 'threshold'),
    (lambda: ops.soft_threshold(jnp.ones(3), -1.0), 'threshold'),
    (lambda: ops.hard_threshold(jnp.ones(3), jnp.array([1.0, jnp.nan, 1.0])),
     'threshold'),
    (lambda: ops.helu(jnp.ones(3), -0.1), 'sigma'),
    (lambda: ops.helu(jnp.ones(3), 1.0), 'sigma'),
])
def test_bad_input_raises_value_error(call, match):
  with pytest.raises(ValueError, match=match):
    call()


@pytest.mark.parametrize('call,match', [
    (lambda: ops.top_m(jnp.float32(1.0), 1), 'u must have at least 1'),
    (lambda: ops.max_m_pool(jnp.float32(1.0), 1), 'u must have at least 1'),
    (lambda: ops.top_m(jnp.ones(3, jnp.complex64), 1), 'u has dtype complex'),
    (lambda: ops.hard_threshold(jnp.ones(3, jnp.float16), 0.5),
     'u has dtype float16'),
    (lambda: ops.max_m_unpool(ops.MaxMPooled(jnp.ones(2), jnp.array([0, 4])),
                              4), r'size=4 must exceed .* \[0, 4\]'),
    (lambda: ops.max_m_unpool(ops.MaxMPooled(jnp.ones(2), jnp.array([-1, 0])),
                              4), 'size=4 must exceed'),
])
def test_bad_arrays_raise_value_error_naming_the_argument(call, match):
  with pytest.raises(ValueError, match=match):
    call()


@pytest.mark.parametrize('name', ['soft', 'hard', 'helu', 'top_m'])
def test_nan_inputs_give_nan_outputs(name):
  u = _random((3, 6), jnp.float32).at[1, 2].set(jnp.nan)
  fn = {'soft': lambda u: ops.soft_threshold(u, 0.5),
        'hard': lambda u: ops.hard_threshold(u, 0.5),
        'helu': lambda u: ops.helu(u, 0.2),
        'top_m': lambda u: ops.top_m(u, 2)}[name]
  for output in (fn(u), jax.jit(fn)(u)):
    assert np.isnan(output[1, 2])
    np.testing.assert_array_equal(np.isnan(output), np.isnan(u))


@pytest.mark.parametrize('dtype', [jnp.int32, bool])
def test_integer_and_list_inputs_are_cast_to_float(dtype):
  u = jnp.asarray([[3, -1, 0, 2]], dtype)
  expected = np_top_m(np.asarray(u, np.float64), 2)
  np.testing.assert_array_equal(ops.top_m(u, 2), expected)
  np.testing.assert_array_equal(ops.top_m(u.tolist(), 2), expected)
  np.testing.assert_array_equal(ops.hard_threshold(u, 1.5),
                                np_hard(np.asarray(u, np.float64), 1.5))


@pytest.mark.parametrize('name, bad, match', [
    ('soft', -0.5, 'threshold must be positive'),
    ('hard', -0.5, 'threshold must be positive'),
    ('hard', jnp.nan, 'threshold must be positive'),
    ('helu', 1.5, r'sigma must be in \[0, 1\)'),
    ('helu', -0.1, r'sigma must be in \[0, 1\)'),
])
def test_traced_bad_values_give_nan_and_fail_under_checkify(name, bad, match):
  u = _random((4, 5), jnp.float32)
  fn = jax.jit({'soft': ops.soft_threshold, 'hard': ops.hard_threshold,
                'helu': ops.helu}[name])
  good = 0.2
  assert np.all(np.isfinite(fn(u, good)))
  assert np.all(np.isnan(fn(u, bad)))
  checked = checkify.checkify(fn, errors=checkify.user_checks)
  assert checked(u, good)[0].get() is None
  error, _ = checked(u, bad)
  assert re.search(match, error.get())
  with pytest.raises(Exception, match=match):
    error.throw()


def test_traced_indices_outside_size_give_nan():
  values = jnp.ones((2, 2))
  unpool = jax.jit(lambda indices: ops.max_m_unpool(
      ops.MaxMPooled(values, indices), 4))
  np.testing.assert_array_equal(unpool(jnp.array([[0, 3], [1, 2]])),
                                [[1, 0, 0, 1], [0, 1, 1, 0]])
  result = unpool(jnp.array([[0, 3], [1, 4]]))
  np.testing.assert_array_equal(result[0], [1, 0, 0, 1])
  assert np.all(np.isnan(result[1]))


def test_validate_false_skips_the_threshold_check():
  # For learned thresholds: the op is applied as written.
  u = jnp.array([-2.0, 0.5, 3.0])
  np.testing.assert_allclose(ops.soft_threshold(u, -1.0, validate=False),
                             np_soft(np.asarray(u), -1.0))
