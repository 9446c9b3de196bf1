"""Tests of the row/column top-s projections (DDSE eq. 8)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l0enc import projections
from references import np_top_m


def _matrix(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape),
                     jnp.float32)


@pytest.mark.parametrize('shape,s', [((6, 10), 1), ((6, 10), 3), ((6, 10), 6),
                                     ((12, 5), 2), ((12, 5), 5)])
def test_rows_and_columns_match_reference_and_are_idempotent(shape, s):
  w = _matrix(shape)
  rows = projections.project_rows_top_s(w, min(s, shape[1]))
  cols = projections.project_cols_top_s(w, min(s, shape[0]))
  np.testing.assert_array_equal(rows, np_top_m(np.asarray(w),
                                                      min(s, shape[1])))
  np.testing.assert_array_equal(cols, np_top_m(np.asarray(w).T,
                                                      min(s, shape[0])).T)
  assert np.all(np.count_nonzero(rows, axis=1) <= s)
  assert np.all(np.count_nonzero(cols, axis=0) <= s)
  np.testing.assert_array_equal(
      projections.project_rows_top_s(rows, min(s, shape[1])), rows)
  np.testing.assert_array_equal(
      projections.project_cols_top_s(cols, min(s, shape[0])), cols)


def test_projection_is_the_nearest_feasible_matrix():
  # Among all matrices with <= s nonzeros per row, keeping the largest
  # magnitudes minimizes the Frobenius distance: check against random
  # feasible candidates with the same values elsewhere.
  w = np.asarray(_matrix((4, 6), seed=1))
  projected = np.asarray(projections.project_rows_top_s(jnp.asarray(w), 2))
  best = np.sum((w - projected)**2)
  rng = np.random.default_rng(2)
  for _ in range(200):
    candidate = np.zeros_like(w)
    for i in range(4):
      keep = rng.choice(6, 2, replace=False)
      candidate[i, keep] = w[i, keep]
    assert np.sum((w - candidate)**2) >= best - 1e-6


def test_under_jit_and_vmap():
  w = _matrix((3, 5, 8))
  batched = jax.vmap(lambda m: projections.project_rows_top_s(m, 3))(w)
  jitted = jax.jit(projections.project_cols_top_s, static_argnums=1)(w[0], 2)
  chex.assert_shape(batched, (3, 5, 8))
  np.testing.assert_array_equal(batched[1],
                                projections.project_rows_top_s(w[1], 3))
  np.testing.assert_array_equal(jitted, projections.project_cols_top_s(w[0], 2))


@pytest.mark.parametrize('call', [
    lambda w: projections.project_rows_top_s(w, 0),
    lambda w: projections.project_rows_top_s(w, 9),
    lambda w: projections.project_cols_top_s(w, 7),
    lambda w: projections.project_rows_top_s(w[0], 2),
])
def test_bad_s_or_shape_raises(call):
  with pytest.raises(ValueError, match='s|matrix'):
    call(_matrix((6, 8)))
