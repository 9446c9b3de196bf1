"""Tests of l0enc.ddse_sparse: weight counts and the sparse export of DDSE."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ddse_models import K, M, N, S
from ddse_models import perturb_and_project, random_signals, small_ddse
from l0enc import ddse_sparse


@pytest.mark.parametrize('shortcuts', [True, False])
def test_sparse_export_matches_dense_forward(shortcuts):
  model = perturb_and_project(small_ddse(shortcuts))
  sparse_weights = ddse_sparse.to_sparse(model)
  x = random_signals(9, seed=7).reshape(3, 3, N)
  dense = model.features(x)
  np.testing.assert_allclose(ddse_sparse.sparse_features(sparse_weights, x),
                             dense, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
      jax.jit(ddse_sparse.sparse_features)(sparse_weights, x), dense,
      rtol=1e-5, atol=1e-6)
  counts = ddse_sparse.count_parameters(model)
  assert counts == ddse_sparse.ParameterCounts(
      nonzero_weights=counts.nonzero_weights, ddse_bound=(2 * K + 1) * S * M,
      dense_weights=(2 * K + 1) * M * N, lista_weights=M * N + K * M * M)
  assert counts.nonzero_weights <= counts.ddse_bound
  assert sparse_weights.input_weights.nse == np.count_nonzero(
      model.input_weights[...])


def test_sparse_features_reject_other_input_dimensions():
  model = small_ddse()
  with pytest.raises(ValueError, match='inputs must have shape'):
    ddse_sparse.sparse_features(ddse_sparse.to_sparse(model),
                                jnp.ones((2, N - 1)))
