"""Results files: atomic JSON and text writes, Markdown tables, timing.

Experiments write their numbers only through these helpers, so that a killed
run never leaves a half-written results file and every table in the README
is the output of a script.
"""

import json
import os
import statistics
import tempfile
import time
from typing import Any, Callable, Sequence

import jax
import numpy as np

from l0enc import validation


def write_text_atomic(path: str, text: str) -> None:
  """Writes `text` to `path` via a temporary file and an atomic rename."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  with tempfile.NamedTemporaryFile('w', dir=directory, delete=False,
                                   suffix='.tmp') as handle:
    handle.write(text)
    temporary = handle.name
  os.replace(temporary, path)


def write_json_atomic(path: str, data: Any) -> None:
  """Writes `data` as indented JSON, atomically."""
  write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + '\n')


def write_binary_atomic(path: str, write: Callable[[Any], None]) -> None:
  """Calls `write(file)` on a temporary binary file, then renames it to `path`.

  The file is flushed to disk before the rename, so `path` holds either the
  old content or the complete new one, even after a crash.
  """
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  with tempfile.NamedTemporaryFile('wb', dir=directory, delete=False,
                                   suffix='.tmp') as handle:
    write(handle)
    handle.flush()
    os.fsync(handle.fileno())
    temporary = handle.name
  os.replace(temporary, path)


def write_results(directory: str, results: Any, markdown: str) -> None:
  """An experiment's `results.json` and `results.md` in `directory`, atomically.

  Args:
    directory: the experiment's output directory (created if missing).
    results: the JSON-able results.
    markdown: their tables, as the script reports them.
  """
  write_json_atomic(os.path.join(directory, 'results.json'), results)
  write_text_atomic(os.path.join(directory, 'results.md'), markdown)


def save_npy_atomic(path: str, array: Any) -> None:
  """`np.save(path, array)`, atomically (`path` should end in .npy)."""
  write_binary_atomic(path, lambda handle: np.save(handle, array))


def save_npz_atomic(path: str, **arrays: Any) -> None:
  """`np.savez(path, **arrays)`, atomically (`path` should end in .npz)."""
  write_binary_atomic(path, lambda handle: np.savez(handle, **arrays))


def save_figure_atomic(figure: Any, path: str, **savefig_kwargs) -> None:
  """Saves a Matplotlib figure via a temporary file and an atomic rename."""
  root, extension = os.path.splitext(path)
  temporary = f'{root}.tmp{extension}'
  figure.savefig(temporary, **savefig_kwargs)
  os.replace(temporary, path)


def read_json(path: str, remedy: str = 'Delete it and rerun the script '
              'that wrote it.') -> Any:
  """The JSON in `path`; a damaged file raises `DamagedFileError`.

  Args:
    path: a JSON file.
    remedy: how to regenerate it, for the error message.

  Raises:
    FileNotFoundError: `path` does not exist.
    validation.DamagedFileError: it is truncated or not JSON; the message
      names it and says `remedy`.
  """
  with validation.reading(path, remedy):
    with open(path) as handle:
      return json.load(handle)


def markdown_table(headers: Sequence[str],
                   rows: Sequence[Sequence[Any]]) -> str:
  """A GitHub Markdown table; floats are printed as given (format them)."""
  lines = ['| ' + ' | '.join(headers) + ' |',
           '|' + '|'.join(' --- ' for _ in headers) + '|']
  lines += ['| ' + ' | '.join(str(cell) for cell in row) + ' |'
            for row in rows]
  return '\n'.join(lines) + '\n'


def time_call(fn: Callable[[], Any], *, warmup: int = 1,
              repeats: int = 3) -> float:
  """Median wall time of `fn()` in seconds, after `warmup` untimed calls.

  JAX dispatches asynchronously, so the result is blocked on
  (`block_until_ready` on every array leaf) before the clock stops; the
  warm-up calls absorb compilation.
  """
  def run():
    return jax.block_until_ready(fn())

  for _ in range(warmup):
    run()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    run()
    times.append(time.perf_counter() - start)
  return statistics.median(times)
