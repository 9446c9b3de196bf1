"""DDSE's double sparsity in numbers and in storage (Sec. 3.3 of the paper).

`count_parameters` counts the nonzero weights of a (projected) `ddse.DDSE`
next to the paper's formulas (Sec. 3.3.1): `(2k + 1) s m` against the
`(2k + 1) m n` of dense storage and the `m n + k m^2` of an untied LISTA.
`to_sparse` exports its feature extractor with the weights as `BCOO` sparse
matrices and `sparse_features` runs it at `O(s m)` per layer and signal
(Sec. 3.3.2), equal to `model.features` up to summation order.
"""

from typing import NamedTuple

import jax
from jax.experimental import sparse
import jax.numpy as jnp

from l0enc import ddse


class ParameterCounts(NamedTuple):
  """Weight counts of a DDSE next to the paper's formulas (Sec. 3.3.1).

  Thresholds, the head and the PCA buffers are not counted, as in the paper.

  Attributes:
    nonzero_weights: the nonzeros of W1 and all W2_i, W3_i.
    ddse_bound: `(2k + 1) s m`, the count for exactly s nonzeros per row /
      column; `nonzero_weights <= ddse_bound` once projected.
    dense_weights: the entries of W1, W2_i, W3_i stored densely,
      `(2k + 1) m n`.
    lista_weights: `m n + k m^2`, the untied LISTA (baseline IV) of the same
      sizes.
  """
  nonzero_weights: int
  ddse_bound: int
  dense_weights: int
  lista_weights: int


def count_parameters(model: ddse.DDSE) -> ParameterCounts:
  """Counts the nonzero weights of `model` (DDSE or baseline V)."""
  weights = (model.input_weights[...], model.synthesis_weights[...],
             model.analysis_weights[...])
  k, m, n = model.num_stages, model.code_dim, model.signal_dim
  return ParameterCounts(
      nonzero_weights=sum(int(jnp.count_nonzero(w)) for w in weights),
      ddse_bound=(2 * k + 1) * model.sparsity * m,
      dense_weights=(2 * k + 1) * m * n,
      lista_weights=m * n + k * m * m)


class SparseDDSE(NamedTuple):
  """A DDSE's feature extractor with sparse weights (`to_sparse`).

  A pytree: `sparse_features` can be jitted with it as an argument.

  Attributes:
    pca_mean: `(n,)`.
    pca_components: D_0, `(n, n)`, dense (an orthonormal basis).
    input_weights: W1, a `BCOO` of shape `(m, n)`.
    synthesis_weights: W2_1..W2_k, a `BCOO` of shape `(k, n, m)` with the
      stage as batch dimension.
    analysis_weights: W3_1..W3_k, a `BCOO` of shape `(k, m, n)`, likewise.
    threshold: the thresholds in effect (their magnitudes), `(k + 1, m)`.
    shortcut_weight: 1.0 for DDSE, 0.0 for baseline V: the coefficient of
      `z_{i-1}` in each stage (a number, so jit can trace it).
  """
  pca_mean: jax.Array
  pca_components: jax.Array
  input_weights: sparse.BCOO
  synthesis_weights: sparse.BCOO
  analysis_weights: sparse.BCOO
  threshold: jax.Array
  shortcut_weight: float


def to_sparse(model: ddse.DDSE) -> SparseDDSE:
  """Exports the weights of a (projected) DDSE as sparse matrices.

  Only the nonzeros are stored, `count_parameters(model).nonzero_weights` of
  them (stacked stages are padded to the stage with the most).

  Args:
    model: a DDSE or baseline V with concrete weights.

  Returns:
    The `SparseDDSE`; the head, if any, stays `model.head`.
  """
  return SparseDDSE(
      pca_mean=model.pca_mean[...],
      pca_components=model.pca_components[...],
      input_weights=sparse.BCOO.fromdense(model.input_weights[...]),
      synthesis_weights=sparse.BCOO.fromdense(model.synthesis_weights[...],
                                              n_batch=1),
      analysis_weights=sparse.BCOO.fromdense(model.analysis_weights[...],
                                             n_batch=1),
      threshold=jnp.abs(model.threshold[...]),
      shortcut_weight=1.0 if model.shortcuts else 0.0)


def sparse_features(weights: SparseDDSE, x: jax.Array) -> jax.Array:
  """DDSE's features (eq. 5) with sparse matrix products (Sec. 3.3.2).

  Each layer costs `O(s m)` per signal instead of `O(m n)`; the result
  equals `model.features(x)` up to floating-point summation order.

  Args:
    weights: from `to_sparse`.
    x: signals, shape `(..., n)`.

  Returns:
    z_k, shape `(..., m)`.
  """
  code_dim, signal_dim = weights.input_weights.shape
  x = jnp.asarray(x)
  if x.ndim < 1 or x.shape[-1] != signal_dim:
    raise ValueError(f'inputs must have shape (..., {signal_dim}), got '
                     f'{x.shape}.')
  batch_shape = x.shape[:-1]
  x_pca = ((x - weights.pca_mean) @ weights.pca_components).reshape(
      -1, signal_dim)
  # Sparse-times-dense products keep the sparse matrix on the left, so the
  # signals travel as columns.
  drive = (weights.input_weights @ x_pca.T).T
  synthesis_shape = weights.synthesis_weights.shape[1:]
  analysis_shape = weights.analysis_weights.shape[1:]

  def recurrence(codes, stage):
    synthesis_data, synthesis_indices, analysis_data, analysis_indices = stage
    synthesis = sparse.BCOO((synthesis_data, synthesis_indices),
                            shape=synthesis_shape)
    analysis = sparse.BCOO((analysis_data, analysis_indices),
                           shape=analysis_shape)
    feedback = (analysis @ (synthesis @ codes.T)).T
    return weights.shortcut_weight * codes - feedback

  codes = ddse.unroll(drive, weights.threshold, recurrence,
                      (weights.synthesis_weights.data,
                       weights.synthesis_weights.indices,
                       weights.analysis_weights.data,
                       weights.analysis_weights.indices))
  return codes.reshape(batch_shape + (code_dim,))
