"""The compactness of a trained DDSE (the DDSE paper, Secs. 3.3.1-3.3.2).

`unit_compactness` measures the trained default DDSE of the experiment:
its nonzero weights against (2k+1) s m and LISTA's m n + k m^2, the file
size of its sparse export against the dense weights, and dense against
sparse inference time on the test set.
"""

import io
import os
from collections.abc import Callable, Mapping
from typing import Any

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from l0enc import data
from l0enc import ddse
from l0enc import ddse_sparse
from l0enc import reporting
from l0enc.experiments import ddse as ddse_unit
from l0enc.experiments import ddse_training
from l0enc.experiments import units

SPARSE_EXPORT_FILE = 'sparse_weights.npz'
COMPACTNESS_FILE = 'compactness.json'


def _npz_bytes(arrays: Mapping[str, np.ndarray], compressed: bool) -> bytes:
  buffer = io.BytesIO()
  (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
  return buffer.getvalue()


def sparse_export_arrays(sparse_weights: ddse_sparse.SparseDDSE
                         ) -> dict[str, np.ndarray]:
  """The BCOO data and indices of W1, W2, W3 as named NumPy arrays."""
  arrays = {}
  for name in ('input_weights', 'synthesis_weights', 'analysis_weights'):
    matrix = getattr(sparse_weights, name)
    arrays[f'{name}_data'] = np.asarray(matrix.data)
    arrays[f'{name}_indices'] = np.asarray(matrix.indices)
  return arrays


def _in_batches(features: Callable[[Any, jax.Array], jax.Array],
                batch_size: int) -> Callable[[Any, jax.Array], jax.Array]:
  """`features(params, x)` jitted over `x` in sequential batches (lax.map)."""
  def apply(params, x):
    num_signals, signal_dim = x.shape
    padded = -(-num_signals // batch_size) * batch_size
    batches = jnp.pad(x, ((0, padded - num_signals), (0, 0))).reshape(
        -1, batch_size, signal_dim)
    outputs = jax.lax.map(lambda batch: features(params, batch), batches)
    return outputs.reshape(padded, -1)[:num_signals]
  return jax.jit(apply)


def compactness(model: ddse.DDSE, x_test: np.ndarray, workdir: str, *,
                repeats: int = 3, batch_size: int = 250) -> dict[str, Any]:
  """Model size and inference time of a projected DDSE (Secs. 3.3.1-3.3.2).

  Counts its nonzero weights against `(2k+1) s m` and LISTA's `m n + k m^2`,
  writes the sparse export of W1, W2, W3 (`np.savez_compressed` of their
  BCOO data and indices) to `workdir/sparse_weights.npz` and compares its
  size with the dense weights saved by `np.savez` (and, for fairness,
  `np.savez_compressed`, which also squeezes the zeros), and times the
  features of the whole test set with dense matrix products
  (`model.features`) and sparse ones (`ddse_sparse.sparse_features`), both
  jitted and in the same sequential batches, in this one process
  (`reporting.time_call`, median after a warm-up). Batches bound the
  memory of the sparse form: its BCOO products materialize one value per
  (nonzero weight, signal), 8 GB for m = 1024, s = 196 and all 10,000
  test images at once. Thresholds, head and PCA basis are the same for
  both forms and not counted.

  Args:
    model: the projected DDSE.
    x_test: flattened test images `(num, n)`.
    workdir: where the sparse export goes.
    repeats: timed calls per measurement.
    batch_size: test images per batch of the timed feature computations.

  Returns:
    A JSON-able dict of counts, byte sizes, seconds and ratios.
  """
  counts = ddse_sparse.count_parameters(model)
  sparse_weights = ddse_sparse.to_sparse(model)
  sparse_arrays = sparse_export_arrays(sparse_weights)
  dense_arrays = {name: np.asarray(getattr(model, name)[...]) for name in
                  ('input_weights', 'synthesis_weights', 'analysis_weights')}
  export_path = os.path.join(workdir, SPARSE_EXPORT_FILE)
  reporting.write_binary_atomic(
      export_path, lambda handle: np.savez_compressed(handle, **sparse_arrays))
  sparse_bytes = os.path.getsize(export_path)
  dense_bytes = len(_npz_bytes(dense_arrays, compressed=False))
  dense_compressed_bytes = len(_npz_bytes(dense_arrays, compressed=True))

  was_training = not getattr(model, 'deterministic', True)
  model.eval()
  graphdef, state = nnx.split(model)
  dense_fn = _in_batches(
      lambda state, x: nnx.merge(graphdef, state).features(x), batch_size)
  sparse_fn = _in_batches(ddse_sparse.sparse_features, batch_size)
  x = jnp.asarray(x_test)
  dense_seconds = reporting.time_call(lambda: dense_fn(state, x),
                                      repeats=repeats)
  sparse_seconds = reporting.time_call(lambda: sparse_fn(sparse_weights, x),
                                       repeats=repeats)
  difference = float(jnp.max(jnp.abs(dense_fn(state, x)
                                     - sparse_fn(sparse_weights, x))))
  if was_training:
    model.train()
  return {
      'nonzero_weights': counts.nonzero_weights,
      'ddse_bound': counts.ddse_bound,
      'dense_weights': counts.dense_weights,
      'lista_weights': counts.lista_weights,
      'nonzeros_over_bound': counts.nonzero_weights / counts.ddse_bound,
      'nonzeros_over_lista': counts.nonzero_weights / counts.lista_weights,
      'bound_over_lista': counts.ddse_bound / counts.lista_weights,
      'sparse_export_bytes': sparse_bytes,
      'dense_npz_bytes': dense_bytes,
      'dense_npz_compressed_bytes': dense_compressed_bytes,
      'sparse_over_dense_bytes': sparse_bytes / dense_bytes,
      'num_test_signals': int(len(x_test)),
      'dense_seconds': dense_seconds,
      'sparse_seconds': sparse_seconds,
      'sparse_over_dense_seconds': sparse_seconds / dense_seconds,
      'max_feature_difference': difference,
      'timing_repeats': repeats,
      'timing_batch_size': batch_size,
  }


def unit_compactness(config: ddse_unit.Config, workdir: str, *,
                     split: data.Split | None = None,
                     timing_repeats: int = 3,
                     report_only: bool = False) -> dict[str, Any] | None:
  """`compactness` of a finished DDSE unit, kept in `compactness.json`.

  Measured once (`units.run_unit`, like the unit itself) and read back
  after.

  Args:
    config: a DDSE (or baseline V) unit that `run` has finished.
    workdir: its directory; the sparse export is written there too.
    split: the loaded dataset (for the test images); loaded if None.
    timing_repeats: timed calls per measurement.
    report_only: do not measure: None if it was not measured before.

  Returns:
    The `compactness` dict, with the unit's test error (and its config);
    None with `report_only` if it was not measured.

  Raises:
    ValueError: `config` is not a sparse method, the unit has not
      finished, or `compactness.json` holds another configuration.
  """
  if not config.is_sparse:
    raise ValueError(f'compactness needs DDSE or baseline V, got '
                     f'{config.method!r}.')
  results_path = os.path.join(workdir, ddse_unit.RESULTS_FILE)

  def measure(unit_dir):
    if not os.path.exists(results_path):
      raise ValueError(f'{unit_dir} holds no finished unit; run it first.')
    model = ddse_training.restore_final_model(config, unit_dir)
    x_test = ddse_unit.prepare_data(config, split).x_test
    measured = compactness(model, x_test, unit_dir, repeats=timing_repeats)
    measured['test_error'] = reporting.read_json(results_path)['test_error']
    measured['device'] = ddse_training.device_name()
    return measured

  settings = ddse_unit.config_json(config)
  return units.run_unit(
      workdir, settings, measure, results_file=COMPACTNESS_FILE,
      settings_key='config', ignore=ddse_training.UNIT_IGNORED_SETTINGS,
      # Files of older versions hold no config; they are the measurement
      # of the unit in the same directory, whose config `run` checked.
      upgrade=lambda saved: saved or settings, report_only=report_only)
