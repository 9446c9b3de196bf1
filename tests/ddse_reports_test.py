"""Tests of the DDSE experiment's reports (`l0enc.experiments.ddse_reports`)."""

import json
import os

import pytest

from l0enc import ddse
from l0enc.experiments import ddse_reports

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)

def _combined_with_errors(errors_by_sweep):
  """A `run_experiment`-shaped dict holding only test errors."""
  units, sweeps = {}, {}
  for sweep, (values, errors) in errors_by_sweep.items():
    names = {}
    for method, method_errors in errors.items():
      names[method] = []
      for value, error in zip(values, method_errors):
        name = f'{method}_{sweep}_{value}'
        units[name] = {'test_error': error}
        names[method].append(name)
    sweeps[sweep] = {'values': list(values), 'units': names}
  return {'methods': list(ddse.MODEL_KINDS), 'sweeps': sweeps,
          'units': units}


@pytest.mark.parametrize('ddse_wins', [True, False])
def test_paper_claims_follow_the_errors(ddse_wins):
  others = {method: [2.0, 2.5, 3.0] for method in ddse.MODEL_KINDS}
  ddse_errors = [1.0, 0.5, 1.2] if ddse_wins else [2.1, 2.6, 3.1]
  errors = others | {ddse.DDSE_MODEL: ddse_errors}
  combined = _combined_with_errors({
      'sparsity_ratio': ((0.1, 0.25, 0.5), errors),
      'num_stages': ((1, 2, 3), errors)})
  claims = {(c.figure, c.claim): c for c in ddse_reports.paper_claims(combined)}
  best_s = claims['Fig. 3', 'DDSE has the lowest error of the six methods '
                  'at every s/n']
  assert best_s.holds == ddse_wins
  assert best_s.ours.startswith(f'best at {3 if ddse_wins else 0} of 3')
  assert claims['Fig. 3', "DDSE's best s/n is about 0.25"].holds == ddse_wins
  assert claims['Fig. 6', 'DDSE has the lowest error at every k'].holds == (
      ddse_wins)
  # Only the sweeps that ran are checked.
  assert {figure for figure, _ in claims} == {'Fig. 3', 'Fig. 6'}
  table = ddse_reports.claims_table(list(claims.values()))
  assert table.count('| yes |' if ddse_wins else '| no |') >= 3



@pytest.mark.parametrize('preset', ['quick', 'paper'])
def test_committed_results_give_the_committed_tables(preset):
  directory = os.path.join(ROOT, 'results', f'ddse_{preset}')
  with open(os.path.join(directory, 'results.json')) as handle:
    combined = json.load(handle)
  with open(os.path.join(directory, 'results.md')) as handle:
    committed = handle.read()
  tables = [ddse_reports.default_table(combined),
            ddse_reports.claims_table(ddse_reports.paper_claims(combined)),
            ddse_reports.compactness_table(combined['compactness'])]
  tables += [ddse_reports.sweep_table(combined, sweep)
             for sweep in combined['sweeps']]
  for table in tables:
    assert table in committed
