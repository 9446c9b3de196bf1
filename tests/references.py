"""Plain NumPy references shared by the tests, written independently of l0enc."""

import numpy as np


def np_top_m(u, m):
  """Keeps the m largest magnitudes along the last axis; ties to lower index."""
  u = np.asarray(u)
  out = np.zeros_like(u)
  # A stable sort on -|u| puts equal magnitudes in index order.
  keep = np.argsort(-np.abs(u), axis=-1, kind='stable')[..., :m]
  np.put_along_axis(out, keep, np.take_along_axis(u, keep, -1), -1)
  return out
