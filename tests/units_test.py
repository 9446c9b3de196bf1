"""Tests of the resumable units (l0enc.experiments.units)."""

import json
import os

import jax
import pytest

from l0enc import reporting
from l0enc.experiments import units

SETTINGS = {'lam': 0.5, 'sizes': (1, 2), 'data_dir': '/here'}


class Counting:
  """A unit's `compute` that counts its calls."""

  def __init__(self):
    self.calls = 0

  def __call__(self, unit_dir):
    self.calls += 1
    return {'error': 1.5, 'unit_dir': unit_dir}


def test_computes_once_then_reads_back(tmp_path):
  compute = Counting()
  first = units.run_unit(str(tmp_path), SETTINGS, compute)
  again = units.run_unit(str(tmp_path), SETTINGS, compute)
  assert compute.calls == 1
  assert first == again == {'error': 1.5, 'unit_dir': str(tmp_path),
                            'settings': units.as_json(SETTINGS)}
  with open(tmp_path / units.RESULTS_FILE) as handle:
    assert json.load(handle) == first


@pytest.mark.parametrize('results_file, settings_key', [
    (units.RESULTS_FILE, 'settings'), ('results.json', 'config')])
def test_results_file_and_settings_key(tmp_path, results_file, settings_key):
  results = units.run_unit(str(tmp_path), SETTINGS, Counting(),
                           results_file=results_file,
                           settings_key=settings_key)
  assert reporting.read_json(str(tmp_path / results_file)) == results
  assert results[settings_key] == units.as_json(SETTINGS)


@pytest.mark.parametrize('field, value', [('lam', 0.25), ('sizes', (1, 3))])
def test_other_settings_raise_naming_the_file_and_the_field(tmp_path, field,
                                                            value):
  units.run_unit(str(tmp_path), SETTINGS, Counting())
  compute = Counting()
  with pytest.raises(ValueError, match=(
      f'{units.RESULTS_FILE} holds another configuration.*{field}:')):
    units.run_unit(str(tmp_path), dict(SETTINGS, **{field: value}), compute)
  assert compute.calls == 0


def test_ignored_settings_do_not_count(tmp_path):
  units.run_unit(str(tmp_path), SETTINGS, Counting(), ignore=('data_dir',))
  compute = Counting()
  results = units.run_unit(str(tmp_path), dict(SETTINGS, data_dir='/there'),
                           compute, ignore=('data_dir',))
  assert compute.calls == 0
  assert results['settings']['data_dir'] == '/here'  # As saved.


def test_upgrade_maps_older_saved_settings(tmp_path):
  # An older version saved `lambda` where today's settings say `lam`.
  old = {'lambda': 0.5, 'sizes': [1, 2], 'data_dir': '/here'}
  reporting.write_json_atomic(str(tmp_path / units.RESULTS_FILE),
                              {'error': 2.0, 'settings': old})
  rename = lambda saved: {('lam' if name == 'lambda' else name): value
                          for name, value in saved.items()}
  compute = Counting()
  results = units.run_unit(str(tmp_path), SETTINGS, compute, upgrade=rename)
  assert compute.calls == 0 and results['error'] == 2.0
  with pytest.raises(ValueError, match='another configuration'):
    units.run_unit(str(tmp_path), SETTINGS, compute)


def test_report_only_leaves_an_unfinished_unit_out(tmp_path):
  compute = Counting()
  assert units.run_unit(str(tmp_path), SETTINGS, compute,
                        report_only=True) is None
  assert compute.calls == 0
  assert not os.listdir(tmp_path)
  finished = units.run_unit(str(tmp_path), SETTINGS, compute)
  assert units.run_unit(str(tmp_path), SETTINGS, compute,
                        report_only=True) == finished


def test_the_results_file_is_written_atomically(tmp_path, monkeypatch):
  written = []
  write = reporting.write_json_atomic
  monkeypatch.setattr(reporting, 'write_json_atomic',
                      lambda path, data: (written.append(path),
                                          write(path, data)))
  units.run_unit(str(tmp_path), SETTINGS, Counting())
  assert written == [os.path.join(str(tmp_path), units.RESULTS_FILE)]
  assert os.listdir(tmp_path) == [units.RESULTS_FILE]  # No temporary left.


def test_a_failed_unit_leaves_no_results_and_runs_again(tmp_path):
  def fail(unit_dir):
    raise RuntimeError('killed')

  with pytest.raises(RuntimeError):
    units.run_unit(str(tmp_path), SETTINGS, fail)
  assert units.read_finished(str(tmp_path), SETTINGS) is None
  compute = Counting()
  units.run_unit(str(tmp_path), SETTINGS, compute)
  assert compute.calls == 1


@pytest.mark.parametrize('timed', [False, True])
def test_timed_adds_seconds_and_device(tmp_path, timed):
  results = units.run_unit(str(tmp_path), SETTINGS, Counting(), timed=timed)
  assert ('seconds' in results) == ('device' in results) == timed
  if timed:
    assert results['seconds'] >= 0
    assert results['device'] == jax.devices()[0].device_kind


def test_read_finished_of_a_missing_unit_is_none(tmp_path):
  assert units.read_finished(str(tmp_path / 'missing'), SETTINGS) is None
