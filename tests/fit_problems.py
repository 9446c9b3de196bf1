"""Small training problems shared by the tests of l0enc.train and checkpoint."""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l0enc import models
from l0enc import solvers

SIGNAL_DIM, CODE_DIM, M, LAM = 12, 20, 4, 0.05
NUM_EXAMPLES = 256


@pytest.fixture(autouse=True)
def exact_matmuls():
  """No TF32 on GPUs: predictions are compared across batchings."""
  with jax.default_matmul_precision('highest'):
    yield


def unit_dictionary(seed=0):
  atoms = np.random.default_rng(seed).normal(size=(SIGNAL_DIM, CODE_DIM))
  return jnp.asarray(atoms / np.linalg.norm(atoms, axis=0), jnp.float32)


def iht_problem(m=None, seed=1):
  """Signals and their converged IHT codes for the dictionary of seed 0."""
  x = jax.random.normal(jax.random.key(seed), (NUM_EXAMPLES, SIGNAL_DIM))
  codes = solvers.iht(x, unit_dictionary(), lam=None if m else LAM, m=m,
                      num_iterations=100).codes
  return np.asarray(x), np.asarray(codes)


def make_encoder(kind):
  """An encoder of `kind` ('l0', 'msparse', 'lista' or 'mlp')."""
  if kind == 'l0':
    return models.DeepL0Encoder.from_dictionary(unit_dictionary(), lam=LAM)
  if kind == 'msparse':
    return models.DeepMSparseEncoder.from_dictionary(unit_dictionary(), m=M)
  if kind == 'lista':
    return models.LISTA(SIGNAL_DIM, CODE_DIM, rngs=nnx.Rngs(0))
  return models.MLPEncoder(SIGNAL_DIM, CODE_DIM, rngs=nnx.Rngs(0))


def state_arrays(model):
  """The model's state as NumPy arrays (PRNG keys as their key data)."""
  def to_numpy(value):
    if jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
      value = jax.random.key_data(value)
    return np.asarray(value)
  return jax.tree.map(to_numpy, nnx.state(model))
