"""Small DDSE models shared by the tests of l0enc.ddse and ddse_sparse."""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from l0enc import ddse
from l0enc import transforms

N, M, K, S, CLASSES = 12, 16, 2, 3, 4


def random_signals(num=24, seed=0):
  rng = np.random.default_rng(seed)
  return jnp.asarray(rng.normal(size=(num, N)) + 0.5, jnp.float32)


def small_ddse(shortcuts=True, seed=0, **kwargs):
  return ddse.DDSE.from_data(random_signals(), N, M, sparsity=S,
                             num_stages=K, num_classes=CLASSES,
                             shortcuts=shortcuts, rngs=nnx.Rngs(seed),
                             **kwargs)


def perturb_and_project(model, seed=1):
  """Random dense weights, then the projection: a trained-looking DDSE."""
  rng = np.random.default_rng(seed)
  params = jax.tree.map(
      lambda p: p + 0.3 * jnp.asarray(rng.normal(size=p.shape), p.dtype),
      nnx.state(model, nnx.Param))
  nnx.update(model, transforms.project_params(params,
                                              model.sparsity_constraints()))
  return model
