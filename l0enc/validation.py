"""Argument checks shared by the library: raise a clear `ValueError` early.

Checks on *shapes* and *dtypes* always run (they are static under `jit`).
Checks on *values* raise when the value is concrete (a Python number or a
NumPy/JAX array outside of a trace). A traced value (under `jit`, `vmap` or
`grad`) cannot be read at trace time; for those the public functions call
`nan_unless`, which turns the result into NaN wherever the value is invalid
(never plausible numbers) and, under `jax.experimental.checkify.checkify`,
fails with a message naming the argument, like the eager check:

    checked = checkify.checkify(jax.jit(fn), errors=checkify.user_checks)
    error, result = checked(...)
    error.throw()  # A JaxRuntimeError naming the argument.

Damaged files: `reading(path, remedy)` wraps every read of a data file,
checkpoint or results file, so that a truncated archive, a text file under
an `.npz` name or an object array raises `DamagedFileError` naming the path
and saying how to regenerate or fetch it.
"""

import contextlib
import json
import math
import os
import zipfile
import zlib
from typing import Any, Iterator, Sequence

import jax
from jax.experimental import checkify
import jax.numpy as jnp
import numpy as np

# Floating dtypes every public array argument accepts; integer and boolean
# arrays (and nested lists) are cast to the default float dtype.
FLOAT_DTYPES = ('float32', 'float64')


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


def check_fraction(name: str, value: Any) -> None:
  """Raises unless a concrete number `value` is in (0, 1] (None passes)."""
  if value is None or not is_concrete(value):
    return
  if not 0 < value <= 1:
    raise ValueError(f'{name} must be in (0, 1], got {value}.')


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
  """Raises unless `value` is one of `choices`."""
  if value not in choices:
    raise ValueError(f'{name} must be one of {tuple(choices)}, got '
                     f'{value!r}.')


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


# ---------------------------------------------------------------- dtypes


def as_float_array(name: str, value: Any, *,
                   allow_bfloat16: bool = False) -> jax.Array:
  """`value` as a real floating JAX array, or a `ValueError` naming `name`.

  Args:
    name: the argument's name, for the message.
    value: an array or array-like (nested lists, NumPy arrays, tracers).
      Integer and boolean values are cast to the default float dtype
      (float32, or float64 with `jax_enable_x64`); float32 and float64 stay
      as they are.
    allow_bfloat16: also accept bfloat16 (for element-wise ops).

  Returns:
    The array; a tracer stays a tracer.

  Raises:
    ValueError: complex, float16 (or bfloat16 unless allowed), object or
      string values, or a ragged nested list.
  """
  accepted = FLOAT_DTYPES + (('bfloat16',) if allow_bfloat16 else ())
  if not isinstance(value, jax.Array):
    try:
      value = jnp.asarray(value)
    except (TypeError, ValueError) as error:
      raise ValueError(
          f'{name} must be a real array of {"/".join(accepted)} (integers '
          f'are cast to float), got {type(value).__name__}: {error}'
      ) from error
  dtype = value.dtype
  if jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.bool_):
    return value.astype(jnp.result_type(float))
  if dtype.name not in accepted:
    kind = ('complex: take the real part or split real and imaginary '
            'parts first' if jnp.issubdtype(dtype, jnp.complexfloating)
            else 'not supported here')
    raise ValueError(f'{name} has dtype {dtype.name} ({kind}); accepted dtypes '
                     f'are {", ".join(accepted)}, and integers, which are '
                     'cast to float.')
  return value


# --------------------------------------------------------- traced values


def nan_unless(valid: Any, result: jax.Array, message: str,
               **values: Any) -> jax.Array:
  """`result` where `valid`, NaN elsewhere; a checkify error when not valid.

  For values that are traced (under `jit`) and so cannot be checked before
  the computation: a bad value yields NaN, never plausible numbers, and
  under `checkify.checkify` the call fails with `message`.

  Args:
    valid: booleans broadcastable to `result`.
    result: the floating result to guard.
    message: the error message; `{name}` fields are filled from `values`.
    **values: arrays shown in the message.

  Returns:
    `result`, with NaN where `valid` is false.
  """
  valid = jnp.asarray(valid)
  checkify.debug_check(jnp.all(valid), message, **values)
  return jnp.where(valid, result, jnp.asarray(jnp.nan, result.dtype))


def is_positive_and_finite(value: Any) -> jax.Array:
  """The element-wise test of `check_positive`, for traced values."""
  value = jnp.asarray(value)
  return (value > 0) & jnp.isfinite(value)


def debug_check_finite(name: str, value: Any) -> None:
  """Under `checkify`, fails if a (traced) array holds NaN or inf entries.

  Without checkify it does nothing: NaN inputs propagate to NaN results.
  """
  if value is not None and not is_concrete(value):
    checkify.debug_check(jnp.all(jnp.isfinite(value)),
                         f'{name} holds NaN or infinite entries.')


# ---------------------------------------------------------------- files


class DamagedFileError(ValueError):
  """A file exists but cannot be read as what it should be."""


@contextlib.contextmanager
def reading(path: str, remedy: str) -> Iterator[None]:
  """Wraps the errors of a damaged file in a `DamagedFileError`.

  Catches what NumPy, `zipfile` and `json` raise for a truncated or
  overwritten file (`BadZipFile`, `EOFError`, zlib errors, a JSON decode
  error, "pickled data" or "object arrays" refused without `allow_pickle`,
  undecodable text) and re-raises it with the path and `remedy`. A missing
  file stays a `FileNotFoundError`.

  Args:
    path: the file being read, named in the message.
    remedy: how to regenerate or fetch it, e.g. 'Delete it and rerun'.
  """
  try:
    yield
  except (FileNotFoundError, PermissionError, IsADirectoryError):
    raise  # Not damage: the message of these already names the path.
  except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError,
          KeyError, UnicodeDecodeError) as error:
    if isinstance(error, DamagedFileError):
      raise
    what = ('not valid JSON' if isinstance(error, json.JSONDecodeError)
            else 'truncated or not in the expected format')
    raise DamagedFileError(
        f'{path} is damaged: {what} ({type(error).__name__}: {error}). '
        f'{remedy}') from error


def load_npz(path: str, remedy: str) -> dict[str, np.ndarray]:
  """Every array of an `.npz` archive, read eagerly, without pickle.

  Reading every member inside `reading` catches damage that only shows when
  a member is decompressed (a truncated archive, a bad CRC) or decoded (an
  object array).

  Args:
    path: the archive.
    remedy: how to regenerate or fetch it (for `DamagedFileError`).

  Returns:
    `{key: array}`.

  Raises:
    FileNotFoundError: the file does not exist.
    DamagedFileError: it cannot be read as an `.npz` of plain arrays.
  """
  with reading(path, remedy):
    archive = np.load(path, allow_pickle=False)
    if not isinstance(archive, np.lib.npyio.NpzFile):
      raise ValueError('a single .npy array, not an .npz archive')
    with archive:
      return {key: archive[key] for key in archive.files}


# ---------------------------------------------------------------- flags


def register_flag_checks(*, positive: tuple[str, ...] = (),
                         nonnegative: tuple[str, ...] = (),
                         fraction: tuple[str, ...] = (),
                         below_one: tuple[str, ...] = (),
                         existing_files: tuple[str, ...] = (),
                         existing_dirs: tuple[str, ...] = (),
                         flag_values: Any = None) -> None:
  """Registers absl validators, so that a bad flag fails while parsing.

  An experiment's flags are then all checked before `main` runs, and the
  error names the flag (`flag --lam=-1.0: must be positive and finite`).
  Integer flags take absl's own `lower_bound`/`upper_bound` instead. A flag
  left at None (a preset's default) passes; every value of a multi flag is
  checked.

  Args:
    positive: float flags that must be positive and finite.
    nonnegative: float flags that must be non-negative and finite.
    fraction: float flags in (0, 1].
    below_one: float flags in [0, 1).
    existing_files: path flags that must name an existing file.
    existing_dirs: path flags that must name an existing directory.
    flag_values: the `FlagValues`; absl's global `FLAGS` by default.
  """
  from absl import flags  # pylint: disable=g-import-not-at-top
  flag_values = flags.FLAGS if flag_values is None else flag_values

  def each(test):
    def check(value):
      values = value if isinstance(value, (list, tuple)) else [value]
      return all(item is None or test(item) for item in values)
    return check

  def number(value):
    # List flags hold strings: a value that is no number fails the rule.
    try:
      return float(value)
    except (TypeError, ValueError):
      return math.nan

  finite = lambda v: math.isfinite(number(v))
  rules = [
      (positive, lambda v: finite(v) and number(v) > 0,
       'must be positive and finite'),
      (nonnegative, lambda v: finite(v) and number(v) >= 0,
       'must be non-negative and finite'),
      (fraction, lambda v: 0 < number(v) <= 1, 'must be in (0, 1]'),
      (below_one, lambda v: 0 <= number(v) < 1, 'must be in [0, 1)'),
      (existing_files, os.path.isfile, 'must name an existing file'),
      (existing_dirs, os.path.isdir, 'must name an existing directory'),
  ]
  for names, test, message in rules:
    for name in names:
      flags.register_validator(name, each(test), message=message,
                               flag_values=flag_values)


def data_file_path(path: str | None, data_dir: str | None,
                   file_name: str) -> str | None:
  """`path` if given, else `<data_dir>/<file_name>`, else None."""
  if path is not None:
    return path
  return None if data_dir is None else os.path.join(data_dir, file_name)


def register_data_file_check(dataset: str, path_flag: str, file_name: str,
                             env_name: str, loader: str,
                             flag_values: Any = None) -> None:
  """Registers that `--dataset=<dataset>` finds its file while parsing.

  The file is `--<path_flag>`, else `<--data_dir>/<file_name>`; with
  `--report_only` it need not exist (no data is read), but must be named.

  Args:
    dataset: the value of the multi flag `--dataset` that needs the file.
    path_flag: the flag naming the file.
    file_name: its name inside `--data_dir`.
    env_name: the environment variable `--data_dir` defaults to (for the
      message).
    loader: the `l0enc.data` loader whose docstring says where to get it.
    flag_values: the `FlagValues`; absl's global `FLAGS` by default.
  """
  from absl import flags  # pylint: disable=g-import-not-at-top
  flag_values = flags.FLAGS if flag_values is None else flag_values
  names = ['dataset', 'data_dir', path_flag, 'report_only']

  def found(values) -> bool:
    if dataset not in values['dataset']:
      return True
    path = data_file_path(values[path_flag], values['data_dir'], file_name)
    return path is not None and (values['report_only'] or
                                 os.path.isfile(path))

  flags.register_multi_flags_validator(
      names, found, flag_values=flag_values,
      message=(f'--dataset={dataset} reads --{path_flag}, else <--data_dir or '
               f'${env_name}>/{file_name}: no such file (see '
               f'l0enc.data.{loader} for where to get it)'))
