"""Plain NumPy references shared by the tests, written independently of l0enc."""

import jax.numpy as jnp
import numpy as np


def np_top_m(u, m):
  """Keeps the m largest magnitudes along the last axis; ties to lower index."""
  u = np.asarray(u)
  out = np.zeros_like(u)
  # A stable sort on -|u| puts equal magnitudes in index order.
  keep = np.argsort(-np.abs(u), axis=-1, kind='stable')[..., :m]
  np.put_along_axis(out, keep, np.take_along_axis(u, keep, -1), -1)
  return out


def make_problem(num_signals=40, n=20, p=40, sparsity=4, noise=0.01, seed=0):
  """Noisy signals of random sparse codes and a unit-norm random dictionary.

  Returns:
    `(x, dictionary)` as JAX arrays, shapes `(num_signals, n)` and `(n, p)`.
  """
  rng = np.random.default_rng(seed)
  dictionary = rng.normal(size=(n, p))
  dictionary /= np.linalg.norm(dictionary, axis=0)
  codes = np.zeros((num_signals, p))
  for row in codes:
    row[rng.choice(p, sparsity, replace=False)] = rng.normal(size=sparsity) * 2
  x = codes @ dictionary.T + noise * rng.normal(size=(num_signals, n))
  return jnp.asarray(x), jnp.asarray(dictionary)
