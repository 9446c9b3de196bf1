"""Resumable units: the one mechanism every experiment uses to skip work.

An experiment is a list of units (one setting, one encoder, one sweep
point), each with its own directory. A finished unit's results file holds
the settings it ran with; running the unit again reads the file back
instead of recomputing, provided the settings agree, and otherwise refuses
with an error naming the file and the differing settings. A killed unit has
no results file and runs again (its training resumes from the checkpoints
`train.fit` left in the unit's directory). Results files are written
atomically through `l0enc.reporting`, so they are either absent or
complete.
"""

import json
import os
import time
from typing import Any, Callable

from absl import logging
import jax

from l0enc import reporting

RESULTS_FILE = 'result.json'


def as_json(value: Any) -> Any:
  """`value` as JSON holds it (tuples as lists, keys as strings)."""
  return json.loads(json.dumps(value))


def _differences(saved: dict[str, Any], settings: dict[str, Any]) -> str:
  names = sorted(set(saved) | set(settings))
  return '; '.join(f'{name}: {saved.get(name)!r} there, '
                   f'{settings.get(name)!r} here'
                   for name in names if saved.get(name) != settings.get(name))


def read_finished(unit_dir: str, settings: dict[str, Any], *,
                  results_file: str = RESULTS_FILE,
                  settings_key: str = 'settings',
                  ignore: tuple[str, ...] = (),
                  upgrade: Callable[[dict[str, Any]], dict[str, Any]] = (
                      lambda saved: saved)) -> dict[str, Any] | None:
  """The unit's results if it finished with these settings, else None.

  Args:
    unit_dir: the unit's directory.
    settings: what the unit runs with, JSON-able.
    results_file: the results file's name inside `unit_dir`.
    settings_key: the key under which the results file holds the settings.
    ignore: settings that do not change the results (e.g. where the data
      was read from), left out of the comparison.
    upgrade: maps settings saved by an older version of the experiment to
      today's form before comparing.

  Returns:
    The results, or None when the unit has not finished.

  Raises:
    ValueError: the results file holds other settings.
  """
  path = os.path.join(unit_dir, results_file)
  if not os.path.exists(path):
    return None
  results = reporting.read_json(path)
  strip = lambda values: {name: value for name, value in values.items()
                          if name not in ignore}
  saved = strip(as_json(upgrade(results.get(settings_key, {}))))
  wanted = strip(as_json(settings))
  if saved != wanted:
    raise ValueError(f'{path} holds another configuration ('
                     f'{_differences(saved, wanted)}); use another workdir '
                     'or the same settings.')
  return results


def run_unit(unit_dir: str, settings: dict[str, Any],
             compute: Callable[[str], dict[str, Any]], *,
             results_file: str = RESULTS_FILE, settings_key: str = 'settings',
             ignore: tuple[str, ...] = (),
             upgrade: Callable[[dict[str, Any]], dict[str, Any]] = (
                 lambda saved: saved),
             report_only: bool = False,
             timed: bool = False) -> dict[str, Any] | None:
  """Runs one unit, or reads it back when it has finished.

  Args:
    unit_dir: the unit's directory (checkpoints and the results file).
    settings: what the unit runs with, JSON-able; stored in the results
      under `settings_key` and compared when the unit is read back.
    compute: `compute(unit_dir) -> results`, a JSON-able dict.
    results_file: the results file's name inside `unit_dir`.
    settings_key: the key of the settings in the results.
    ignore: settings left out of the comparison (see `read_finished`).
    upgrade: see `read_finished`.
    report_only: do not compute an unfinished unit: return None.
    timed: add the unit's wall time (`seconds`) and device to the results.

  Returns:
    The results, or None for an unfinished unit with `report_only`.

  Raises:
    ValueError: a results file with other settings is in `unit_dir`.
  """
  results = read_finished(unit_dir, settings, results_file=results_file,
                          settings_key=settings_key, ignore=ignore,
                          upgrade=upgrade)
  path = os.path.join(unit_dir, results_file)
  if results is not None:
    logging.info('Unit already done: %s', path)
    return results
  if report_only:
    logging.warning('Unit %s not done: left out of the report.', unit_dir)
    return None
  logging.info('Unit %s.', unit_dir)
  start = time.perf_counter()
  results = dict(compute(unit_dir))
  results[settings_key] = as_json(settings)
  if timed:
    results['seconds'] = time.perf_counter() - start
    results['device'] = jax.devices()[0].device_kind
  reporting.write_json_atomic(path, results)
  return results
