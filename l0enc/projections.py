"""Projections onto row- and column-wise s-sparse matrices (DDSE, eqs. 6 and 8).

The feasible sets of the Deep Double Sparsity Encoder's weights are matrices
with at most `s` nonzeros per row (W1, W3) or per column (W2). Projecting onto
them keeps the `s` largest-magnitude entries of each row / column (ties broken
towards the lower index) and zeros the rest. Equation numbers refer to
../shared/papers/deep-double-sparsity-encoder.txt.
"""

import jax
import jax.numpy as jnp

from l0enc import ops
from l0enc import validation


def _check(w: jax.Array, s: int, axis_name: str, axis: int) -> int:
  if jnp.ndim(w) != 2:
    raise ValueError(f'w must be a matrix, got shape {jnp.shape(w)}.')
  return validation.check_int_in_range(
      f's (at most the {axis_name} length {w.shape[axis]})', s, 1,
      w.shape[axis])


def project_rows_top_s(w: jax.Array, s: int) -> jax.Array:
  """Keeps the `s` largest-magnitude entries of each row of `w` (P_1, P_3).

  Args:
    w: matrix of shape `(rows, cols)`.
    s: nonzeros to keep per row, `1 <= s <= cols`.

  Returns:
    Matrix of the same shape with at most `s` nonzeros per row.
  """
  return ops.top_m(w, _check(w, s, 'row', 1))


def project_cols_top_s(w: jax.Array, s: int) -> jax.Array:
  """Keeps the `s` largest-magnitude entries of each column of `w` (P_2).

  Args:
    w: matrix of shape `(rows, cols)`.
    s: nonzeros to keep per column, `1 <= s <= rows`.

  Returns:
    Matrix of the same shape with at most `s` nonzeros per column.
  """
  return ops.top_m(w.T, _check(w, s, 'column', 0)).T
