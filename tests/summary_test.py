"""experiments/summary.py: one row per headline whose results file exists."""

import copy
import importlib.util
import json
import os

import pytest

from l0enc.experiments import approximation
from l0enc.experiments import paper

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)


def load_script():
  spec = importlib.util.spec_from_file_location(
      'summary', os.path.join(ROOT, 'experiments', 'summary.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


summary = load_script()


def approximation_result(problem: str, code_dim: int, error: float,
                         whitening_epsilon=None) -> dict:
  deep = approximation.DEEP_NAMES[problem]
  metrics = lambda value: {'prediction_error': value, 'support_error': value}
  return {'config': {'dataset': 'mnist', 'problem': problem,
                     'code_dim': code_dim,
                     'whitening_epsilon': whitening_epsilon},
          'rows': {'IHT (10 iterations)': metrics(10 * error),
                   deep: metrics(error)},
          'speed': {'speedup': error, 'num_signals': 10},
          'device': 'cpu'}


def write(results_dir, experiment: str, data) -> None:
  os.makedirs(os.path.join(results_dir, experiment), exist_ok=True)
  with open(os.path.join(results_dir, experiment, 'results.json'), 'w') as f:
    json.dump(data, f)


def cells(text: str) -> list[list[str]]:
  """The body rows of the summary's Markdown table, split into cells."""
  lines = [line for line in text.splitlines() if line.startswith('| ')]
  return [[cell.strip() for cell in line.strip('|').split('|')]
          for line in lines[2:]]


def test_no_results_no_rows(tmp_path):
  assert summary.summary(str(tmp_path)) == 'No results files found.\n'


def test_approximation_rows_against_the_papers_table(tmp_path):
  write(tmp_path, 'approximation_paper',
        [approximation_result('l0', 256, 2.0),
         approximation_result('l0', 128, 1.0),
         approximation_result('l0', 64, 9.0)])  # Not one of the paper's p.
  rows = cells(summary.summary(str(tmp_path)))
  headlines = [row[0] for row in rows]
  # Problem (1) only: no Table 2 or 3 rows; the speed row from the runs.
  assert len(rows) == 3 and not any('Table 2' in h or 'Table 3' in h
                                    for h in headlines)
  deep = rows[0]
  assert deep[0].startswith('Table 1: Deep l0-Regularized encoder')
  assert deep[0].endswith('p = 128 / 256')
  published = paper.APPROXIMATION_TABLES['l0']['Deep l0-Regularized encoder']
  assert deep[1:3] == ['1.00 / 2.00',
                       f'{published[0]:.2f} / {published[1]:.2f}']
  assert 'literal regime' in deep[3]
  assert rows[1][1] == '10.00 / 20.00'
  assert rows[2][1] == '1.0x to 2.0x on cpu'


def test_the_whitened_regime_is_preferred_and_labelled(tmp_path):
  write(tmp_path, 'approximation_paper',
        [approximation_result('msparse', 128, 5.0)])
  write(tmp_path, 'approximation_whitened',
        [approximation_result('msparse', 128, 0.5, whitening_epsilon=0.03)])
  rows = cells(summary.summary(str(tmp_path)))
  # Tables 2 and 3 and the speed-up, from the whitened regime only.
  assert len(rows) == 4
  assert [row[1] for row in rows[:3]] == ['0.50', '5.00', '0.50']
  assert all('approximation_whitened' in row[3] and 'ε = 0.03' in row[3]
             for row in rows)
  assert rows[3][0].startswith('Speed-up')


def test_classification_picks_the_best_unit_on_validation(tmp_path):
  unit = lambda row, code_dim, validation, test: {
      'unit': {'code_dim': code_dim}, 'row': row,
      'validation_error': validation, 'test_error': test}
  write(tmp_path, 'classification_paper', [{
      'config': {'dataset': 'mnist'},
      'units': {'a': unit('TDSC', 128, 1.0, 3.0),
                # Lower test error, but chosen by validation it loses.
                'b': unit('Tuned LISTA', 256, 2.0, 0.5),
                'c': {'unit': {'code_dim': 512}, 'row': 'TDSC'}}}])  # Unrun.
  (row,) = cells(summary.summary(str(tmp_path)))
  assert row[0].startswith('Table 4')
  assert row[1].startswith('3.00 (TDSC, p = 128')
  best_paper = min(min(paper.TASK_TABLES['mnist'][name])
                   for name in ('TDSC', 'Tuned LISTA'))
  assert row[2].startswith(f'{best_paper:.2f} ')


def test_unrolled_rows_take_each_method_from_its_most_trained_run(tmp_path):
  curve = lambda last: {'test_nmse_db': [-1.0, last]}
  write(tmp_path, 'unrolled_benchmark', {
      'preset': 'quick', 'settings': {'noiseless': {
          'lista': curve(-10.0), 'alista': curve(-30.0),
          'alista_l0': curve(-20.0)}, '40': {'lista': curve(-99.0)}}})
  write(tmp_path, 'unrolled_benchmark_long', {
      'preset': 'long', 'settings': {'noiseless': {
          'alista': curve(-50.0), 'alista_e2e': curve(-60.0)}}})
  family, ours, variant = cells(summary.summary(str(tmp_path)))
  assert family[0].endswith('at 2 stages, noiseless: LISTA / ALISTA')
  assert family[1] == '-10.0 / -50.0'
  assert family[2].startswith(
      f"{paper.UNROLLED_TARGETS_DB['lista']:.0f} / "
      f"{paper.UNROLLED_TARGETS_DB['alista']:.0f} ")
  assert family[3] == ('`results/unrolled_benchmark/`, quick preset: LISTA; '
                       '`results/unrolled_benchmark_long/`, long preset: '
                       'ALISTA')
  assert ours[1] == '-20.0' and 'quick preset' in ours[3]
  # The fine-tuned variant is held to its method's target.
  assert variant[0].endswith('noiseless: ALISTA + e2e')
  assert variant[1] == '-60.0'
  assert variant[2].startswith(f"{paper.UNROLLED_TARGETS_DB['alista']:.0f} ")


def test_unrolled_rows_choose_between_runs_of_a_preset_on_validation(
    tmp_path):
  row = lambda test, validation: {
      'test_nmse_db': [test], 'phases': [{'final_eval_nmse_db': validation}]}
  write(tmp_path, 'unrolled_benchmark_long', {
      'preset': 'long', 'settings': {'noiseless': {
          'alista': row(-50.0, -58.0), 'alista_l0': row(-48.0, -49.0)}}})
  write(tmp_path, 'unrolled_benchmark_long_ss16', {
      'preset': 'long', 'flags': {'max_support_percent': 16.0},
      'settings': {'noiseless': {
          'alista': row(-60.0, -40.0), 'alista_l0': row(-45.0, -50.0)}}})
  write(tmp_path, 'unrolled_benchmark_long_warm', {
      'preset': 'long', 'flags': {'new_stage_init': 'previous_stage'},
      'settings': {'noiseless': {'lista': row(-30.0, -31.0)}}})
  family, ours = cells(summary.summary(str(tmp_path)))
  # ALISTA: the first run's validation is lower; Deep l0: the second's
  # (although its test number is worse); LISTA: the only run with it. The
  # sources say which of our variants a run is.
  assert family[1] == '-30.0 / -50.0'
  assert family[3] == (
      '`results/unrolled_benchmark_long_warm/`, long preset (ours: new '
      'stages start as a copy of the stage before): LISTA; '
      '`results/unrolled_benchmark_long/`, long preset: ALISTA')
  assert ours[1] == '-45.0'
  assert ours[3] == ('`results/unrolled_benchmark_long_ss16/`, long preset '
                     '(ours: support cap 16 % of p): Deep l0, ALISTA form')


@pytest.mark.parametrize('flags, expected', [
    ({}, ''),
    ({'stage_decay_target': 'rate'}, ''),
    ({'stage_decay_target': 'gradient'},
     " (the stage decay on the gradients, as in the papers' codes)"),
    ({'stage_decay_target': 'gradient', 'restore_best': True},
     " (the stage decay on the gradients, as in the papers' codes; ours: "
     'phases end at their best validation epoch)'),
])
def test_unrolled_variant_names_the_stage_decay_target(flags, expected):
  assert summary._unrolled_variant({'flags': flags}) == expected


def test_task_rows_prefer_the_whitened_run_and_report_the_l0_codes(tmp_path):
  unit = lambda row, error, nonzeros=None, code_dim=128: {
      'unit': {'code_dim': code_dim}, 'row': row, 'validation_error': error,
      'test_error': error, 'mean_test_code_nonzeros': nonzeros}
  write(tmp_path, 'classification_paper', [{
      'config': {'dataset': 'mnist'},
      'units': {'a': unit('Tuned LISTA', 9.0)}}])
  write(tmp_path, 'classification_whitened', [{
      'config': {'dataset': 'mnist', 'whitening_epsilon': 10.0},
      'units': {'a': unit('Tuned LISTA', 3.0, 70.0),
                'b': unit('Deep l0-Regularized', 8.0, 120.0),
                'c': unit('Deep l0-Regularized, ours: floor', 5.0, 18.0),
                'd': unit('Fully connected ReLU (reference)', 2.0, 40.0),
                'e': unit('Fully connected ReLU (reference)', 1.0, 40.0,
                          code_dim=256)}}])
  table4, codes = cells(summary.summary(str(tmp_path)))
  # The best of the paper's rows on validation (the reference and our
  # variant are not the paper's), with the reference at the same p.
  assert table4[1] == ('3.00 (Tuned LISTA, p = 128: lowest validation error '
                       "of the paper's rows); fully connected reference 2.00")
  assert '`results/classification_whitened/`' in table4[3]
  assert 'ε = 10' in table4[3]
  assert codes[0].endswith(
      'Deep l0-Regularized · Deep l0-Regularized, ours: floor')
  assert codes[1] == '120.0 · 18.0'


def test_task_rows_choose_the_learning_rate_on_validation(tmp_path):
  unit = lambda row, validation, test, code_dim=128: {
      'unit': {'code_dim': code_dim}, 'row': row,
      'validation_error': validation, 'test_error': test}
  config = lambda rate: {'dataset': 'mnist', 'whitening_epsilon': 10.0,
                         'learning_rate': rate}
  write(tmp_path, 'classification_whitened', [{
      'config': config(1e-3),
      'units': {'a': unit('Tuned LISTA', 3.0, 3.5),
                'b': unit('Deep M-Sparse (M = 10)', 4.0, 2.0),
                'c': unit('Fully connected ReLU (reference)', 2.0, 2.5)}}])
  write(tmp_path, 'classification_whitened_rate', [{
      'config': config(3e-4),
      'units': {'a': unit('Tuned LISTA', 2.5, 3.7),
                'b': unit('Deep M-Sparse (M = 10)', 4.5, 1.0),
                'c': unit('Fully connected ReLU (reference)', 2.2, 1.0)}}])
  table4, = cells(summary.summary(str(tmp_path)))
  # LISTA at the rate its validation error prefers (3e-4, test 3.70), not
  # the lower test number; the reference likewise (1e-3, test 2.50).
  assert table4[1] == ('3.70 (Tuned LISTA, p = 128: lowest validation error '
                       "of the paper's rows); fully connected reference 2.50")
  assert table4[3] == (
      '`results/classification_whitened/`; '
      '`results/classification_whitened_rate/`, ZCA-whitened (ε = 10), '
      'learning rate 0.0003 or 0.001 chosen on validation per row and p')
  # One group must share its regime.
  write(tmp_path, 'classification_whitened_rate', [{
      'config': dict(config(3e-4), whitening_epsilon=1.0), 'units': {}}])
  with pytest.raises(ValueError, match='whitening epsilons'):
    summary.summary(str(tmp_path))


def test_ddse_rows_from_the_committed_results(tmp_path):
  with open(os.path.join(ROOT, 'results', 'ddse_paper', 'results.json')) as f:
    combined = json.load(f)
  write(tmp_path, 'ddse_paper', combined)
  rows = cells(summary.summary(str(tmp_path)))
  assert len(rows) == 3
  sweep = combined['sweeps']['train_fraction']
  errors = [combined['units'][name]['test_error']
            for name in sweep['units']['ddse']]
  low = sweep['values'].index(min(sweep['values']))
  high = sweep['values'].index(max(sweep['values']))
  assert rows[1][1] == f'{errors[low] - errors[high]:+.2f}'
  # A results file without the train-fraction sweep drops that row only.
  partial = copy.deepcopy(combined)
  del partial['sweeps']['train_fraction']
  write(tmp_path, 'ddse_paper', partial)
  assert len(cells(summary.summary(str(tmp_path)))) == 2


@pytest.mark.parametrize('name', ['results_dir', 'output'])
def test_flags_are_defined(name):
  assert name in summary.FLAGS


def test_the_committed_summary_is_up_to_date():
  with open(os.path.join(ROOT, 'results', 'summary.md')) as f:
    committed = f.read()
  assert committed == summary.summary(os.path.join(ROOT, 'results')), (
      'results/summary.md is stale: run experiments/summary.py, then '
      'experiments/update_readme.py')
