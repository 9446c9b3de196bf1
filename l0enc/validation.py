"""Argument checks shared by the library: raise a clear `ValueError` early.

Checks on *values* run only when the value is concrete (a Python number or a
NumPy/JAX array outside of a trace); under `jit`, `vmap` or `grad` they are
skipped, because a traced value cannot be inspected without a device round
trip. Checks on *shapes* always run.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(value: Any) -> bool:
  """True if `value` can be read on the host (it is not a JAX tracer)."""
  return not isinstance(value, jax.core.Tracer)


def check_positive(name: str, value: Any) -> None:
  """Raises if a concrete `value` has an entry that is not strictly positive."""
  if value is None or not is_concrete(value):
    return
  array = np.asarray(value)
  if not np.all(np.isfinite(array)) or np.any(array <= 0):
    raise ValueError(f'{name} must be positive and finite, got {_short(array)}.')


def check_nonnegative(name: str, value: Any) -> None:
  """Raises if a concrete `value` has a negative or non-finite entry."""
  if value is None or not is_concrete(value):
    return
  array = np.asarray(value)
  if not np.all(np.isfinite(array)) or np.any(array < 0):
    raise ValueError(
        f'{name} must be non-negative and finite, got {_short(array)}.')


def check_int_in_range(name: str, value: Any, low: int, high: int) -> int:
  """Returns `value` as an int after checking `low <= value <= high`."""
  if isinstance(value, bool) or int(value) != value:
    raise ValueError(f'{name} must be an integer, got {value!r}.')
  value = int(value)
  if not low <= value <= high:
    raise ValueError(f'{name} must be in [{low}, {high}], got {value}.')
  return value


def check_finite(name: str, value: Any) -> None:
  """Raises if a concrete array holds NaN or infinite entries."""
  if value is None or not is_concrete(value):
    return
  if isinstance(value, jax.Array):
    # Reduce on the device (a host copy of a large array would cost more),
    # eagerly even when a concrete array is closed over inside a trace.
    with jax.ensure_compile_time_eval():
      finite = bool(jnp.all(jnp.isfinite(value)))
  else:
    array = np.asarray(value)
    finite = (not np.issubdtype(array.dtype, np.inexact) or
              bool(np.all(np.isfinite(array))))
  if not finite:
    raise ValueError(f'{name} holds NaN or infinite entries.')


def check_rank_at_least(name: str, value: Any, rank: int) -> None:
  if np.ndim(value) < rank:
    raise ValueError(
        f'{name} must have at least {rank} dimension(s), got shape '
        f'{np.shape(value)}.')


def _short(array: np.ndarray) -> str:
  if array.size <= 4:
    return repr(array.tolist())
  return f'an array with min {np.nanmin(array)!r} (shape {array.shape})'
