r"""Our headline numbers against the papers', from the committed results files.

    python experiments/summary.py          # writes results/summary.md
    python experiments/update_readme.py    # copies it into README.md

Reads the `results.json` of each experiment under --results_dir and writes
one Markdown table, one row per headline: Tables 1-3 of the l0 paper (the
deep encoders and IHT after 10 iterations; from the calibrated, ZCA-whitened
regime in results/approximation_whitened when it is there, else from the
literal regime in results/approximation_paper, and labelled so), the
encoders' speed-up over IHT, Tables 4-7
(classification and clustering, from the whitened runs where they exist,
with the fully connected reference and the Deep l0 codes' nonzeros), the
DDSE paper's headline claims and the
unrolled benchmark (each method from its most-trained run). A row
whose results file is absent is left out. Nothing is recomputed: every number
is read from a file a script wrote, and the papers' from the tables in
`l0enc.experiments.paper`.
"""

import glob
import os
from typing import Any, Callable, NamedTuple, Sequence

from absl import app
from absl import flags
from absl import logging

from l0enc import reporting
from l0enc import validation
from l0enc.experiments import approximation
from l0enc.experiments import ddse_reports
from l0enc.experiments import paper

ROOT = os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

# Tables 1-3 come from the first of these that has a results file.
APPROXIMATION_REGIMES = ('approximation_whitened', 'approximation_paper')

flags.DEFINE_string('results_dir', os.path.join(ROOT, 'results'),
                    'Directory holding one subdirectory per experiment, each '
                    'with its results.json.')
flags.DEFINE_string('output', None, 'Markdown file to write (default: '
                    '<results_dir>/summary.md).')

FLAGS = flags.FLAGS
validation.register_flag_checks(existing_dirs=('results_dir',))

Row = list[str]  # headline, ours, paper, where ours comes from.


def _read(results_dir: str, experiment: str) -> Any | None:
  path = os.path.join(results_dir, experiment, 'results.json')
  return reporting.read_json(path) if os.path.exists(path) else None


def _cells(values: Sequence[float], digits: int = 2) -> str:
  return ' / '.join(f'{value:.{digits}f}' for value in values)


def _source(experiment: str, detail: str = '') -> str:
  return f'`results/{experiment}/`' + (f', {detail}' if detail else '')


def _regime(results: Sequence[dict[str, Any]]) -> str:
  """How the signals were preprocessed, as the runs' configs record it."""
  epsilons = [r['config'].get('whitening_epsilon') for r in results]
  if all(epsilon is None for epsilon in epsilons):
    return 'literal regime (no whitening)'
  regime = ('calibrated regime, ZCA-whitened (ε = '
            + ' / '.join(_epsilon(epsilon) for epsilon in epsilons) + ')')
  tight = sorted({r['config']['code_dim'] for r in results
                  if r['config'].get('tight_frame')})
  if tight:
    regime += (', the dictionary a tight frame at p = '
               + ' / '.join(str(code_dim) for code_dim in tight))
  return regime


def _epsilon(epsilon: float | None) -> str:
  return 'none' if epsilon is None else f'{epsilon:g}'


_APPROXIMATION_HEADLINES = (
    ('l0', 'Table 1', approximation.DEEP_NAMES['l0'], 'prediction_error',
     'l0', 'prediction error (%)'),
    ('l0', 'Table 1', 'IHT (10 iterations)', 'prediction_error', 'l0',
     'prediction error (%)'),
    ('msparse', 'Table 2', approximation.DEEP_NAMES['msparse'],
     'prediction_error', 'msparse', 'prediction error (%)'),
    ('msparse', 'Table 2', 'IHT (10 iterations)', 'prediction_error',
     'msparse', 'prediction error (%)'),
    ('msparse', 'Table 3', approximation.DEEP_NAMES['msparse'],
     'support_error', 'support', 'support error'))


def _approximation_table_rows(experiment: str,
                              results: Sequence[dict[str, Any]],
                              headlines: Sequence[tuple[str, ...]]
                              ) -> list[Row]:
  rows = []
  for problem, table, method, metric, paper_table, what in headlines:
    runs = sorted((r for r in results if r['config']['problem'] == problem),
                  key=lambda r: r['config']['code_dim'])
    if not runs:
      continue
    code_dims = [r['config']['code_dim'] for r in runs]
    published = paper.APPROXIMATION_TABLES[paper_table][method]
    rows.append([
        f'{table}: {method}, {what}, p = '
        + ' / '.join(str(p) for p in code_dims),
        _cells([r['rows'][method][metric] for r in runs]),
        _cells([published[paper.APPROXIMATION_CODE_DIMS.index(p)]
                for p in code_dims]),
        _source(experiment, _regime(runs))])
  return rows


def approximation_rows(results_dir: str) -> list[Row]:
  """Tables 1-3 at the paper's code sizes, and the encoders' speed-up.

  From the first regime of `APPROXIMATION_REGIMES` with results (the
  others' tables are in their own READMEs).
  """
  for experiment in APPROXIMATION_REGIMES:
    results = _read(results_dir, experiment)
    if results:
      results = [r for r in results if r['config']['dataset'] == 'mnist' and
                 r['config']['code_dim'] in paper.APPROXIMATION_CODE_DIMS]
      return (_approximation_table_rows(experiment, results,
                                        _APPROXIMATION_HEADLINES)
              + _speed_rows(results_dir, experiment, results))
  return []


def _speed_rows(results_dir: str, experiment: str,
                results: Sequence[dict[str, Any]]) -> list[Row]:
  """Speed-up of the trained encoders over 10 IHT iterations.

  From each `encoding_benchmark_*` run of the regime (one process alone on
  the machine) when there is one, else as timed during the experiment.
  """
  measured = []
  for path in sorted(glob.glob(os.path.join(
      results_dir, experiment, 'encoding_benchmark_*', 'results.json'))):
    speeds = list(reporting.read_json(path).values())
    measured.append((speeds, os.path.relpath(os.path.dirname(path),
                                             results_dir),
                     'alone on the machine'))
  if not measured and results:
    measured.append(([dict(r['speed'], device=r['device']) for r in results],
                     experiment, 'timed during the run'))
  rows = []
  for speeds, where, how in measured:
    ratios = [speed['speedup'] for speed in speeds]
    devices = sorted({speed['device'] for speed in speeds})
    rows.append([
        'Speed-up of the trained encoders over 10 IHT iterations on the '
        f'test set ({len(speeds)} settings, {how})',
        f'{min(ratios):.1f}x to {max(ratios):.1f}x on {", ".join(devices)}',
        '"dramatically faster" (no number)',
        _source(where, _regime(results))])
  return rows


def _paper_best(dataset: str, rows: Sequence[str]) -> tuple[float, str]:
  """The paper's lowest number among `rows` of its table for `dataset`."""
  table = paper.TASK_TABLES[dataset]
  return min((value, f'{row}, p = {code_dim}')
             for row in rows if row in table
             for value, code_dim in zip(table[row],
                                        paper.TASK_CODE_DIMS))


# Tables 4-7 come, per data set, from the first group of runs that has it.
# The runs of a group share the regime and differ in the learning rate,
# which is then chosen on the validation split like any other setting: the
# units of a group are pooled.
CLASSIFICATION_RUNS = (('classification_whitened',
                        'classification_whitened_rate'),
                       ('classification_paper',))
CLUSTERING_RUNS = (('clustering_whitened',), ('clustering_paper',))
TASK_TITLES = {'mnist': 'Table 4: MNIST classification error (%)',
               'indian_pines': 'Table 5: Indian Pines classification error '
                               '(%)',
               'coil20': 'Table 6: COIL-20 clustering error (%)',
               'pie': 'Table 7: CMU PIE clustering error (%)'}
FULLY_CONNECTED = 'Fully connected ReLU (reference)'
DEEP_L0 = 'Deep l0-Regularized'


def _code_nonzeros(unit: dict[str, Any]) -> float | None:
  """A task unit's mean code nonzeros after training (None: not recorded).

  Classification counts them on the test codes, clustering on all codes.
  """
  return unit.get('mean_test_code_nonzeros', unit.get('mean_code_nonzeros'))


class _TaskRuns(NamedTuple):
  """One data set's units, pooled over the runs of a group that have it."""
  experiments: list[str]
  configs: list[dict[str, Any]]
  units: list[dict[str, Any]]


def _task_results(results_dir: str,
                  groups: Sequence[Sequence[str]]) -> list[_TaskRuns]:
  """The units of each data set, from the first group of runs that has it."""
  found = {}
  for group in groups:
    in_group = {}
    for experiment in group:
      for result in _read(results_dir, experiment) or []:
        runs = in_group.setdefault(result['config']['dataset'],
                                   _TaskRuns([], [], []))
        runs.experiments.append(experiment)
        runs.configs.append(result['config'])
        runs.units.extend(result['units'].values())
    for dataset, runs in in_group.items():
      found.setdefault(dataset, runs)
  return [found[dataset] for dataset in TASK_TITLES if dataset in found]


def _task_regime(runs: _TaskRuns) -> str:
  epsilons = {config.get('whitening_epsilon') for config in runs.configs}
  if len(epsilons) > 1:
    raise ValueError(f'{", ".join(runs.experiments)}: one group of runs, '
                     f'but whitening epsilons {sorted(epsilons, key=str)}')
  epsilon, = epsilons
  regime = ('no whitening' if epsilon is None else
            f'ZCA-whitened (ε = {epsilon:g})')
  rates = sorted({config['learning_rate'] for config in runs.configs
                  if 'learning_rate' in config})
  if len(rates) > 1:
    regime += (', learning rate ' + ' or '.join(f'{rate:g}' for rate in rates)
               + ' chosen on validation per row and p')
  return '; '.join(_source(experiment) for experiment in runs.experiments
                   ) + ', ' + regime


def task_rows(results_dir: str) -> list[Row]:
  """Tables 4-7: the best of the paper's rows, the reference, the codes.

  Classification picks the paper's row with the lowest validation error;
  clustering, which has no held-out split, the lowest error on both sides.
  Where a group of runs tried several learning rates, each (row, p) is the
  run with its lowest validation error (classification) before that pick.
  The fully connected reference (not in the paper) stands beside it, and a
  last row gives the Deep l0 codes' mean nonzeros after training, the
  paper's form against ours, where the runs have both.
  """
  rows, nonzeros = [], []
  for kind, runs in (('classification', CLASSIFICATION_RUNS),
                     ('clustering', CLUSTERING_RUNS)):
    error = 'test_error' if kind == 'classification' else 'error'
    for found in _task_results(results_dir, runs):
      dataset = found.configs[0]['dataset']
      table = paper.TASK_TABLES.get(dataset, {})
      score = lambda unit: unit.get('validation_error', unit[error])
      # Each (row, p) once: the run with its lowest validation error, the
      # group's first run (the preset's rate) on a tie.
      chosen = {}
      for unit in (u for u in found.units if error in u):
        key = unit['row'], unit['unit']['code_dim']
        if key not in chosen or score(unit) < score(chosen[key]):
          chosen[key] = unit
      units = list(chosen.values())
      ours = [u for u in units if u['row'] in table]
      if not ours:
        continue
      best = min(ours, key=score)
      how = ('lowest validation error' if kind == 'classification'
             else 'lowest')
      reference = [u for u in units if u['row'] == FULLY_CONNECTED and
                   u['unit']['code_dim'] == best['unit']['code_dim']]
      published, paper_where = _paper_best(dataset, [u['row'] for u in ours])
      rows.append([
          TASK_TITLES[dataset],
          f"{best[error]:.2f} ({best['row']}, p = "
          f"{best['unit']['code_dim']}: {how} of the paper's rows)"
          + (f'; fully connected reference {reference[0][error]:.2f}'
             if reference else ''),
          f'{published:.2f} ({paper_where}: lowest of the same rows)',
          _task_regime(found)])
      l0 = {u['row']: u for u in units if u['row'].startswith(DEEP_L0) and
            u['unit']['code_dim'] == 128}
      if len(l0) > 1 and None not in map(_code_nonzeros, l0.values()):
        nonzeros.append((dataset, found.experiments, l0))
  if nonzeros:
    names = sorted({row for _, _, l0 in nonzeros for row in l0},
                   key=lambda row: (row != DEEP_L0, row))
    rows.append([
        'Deep l0 codes, mean nonzeros of 128 after end-to-end training, '
        + ' / '.join(TASK_TITLES[d].split(':')[0] for d, _, _ in nonzeros)
        + ': ' + ' · '.join(names),
        ' · '.join(' / '.join(f'{_code_nonzeros(l0[name]):.1f}'
                              if name in l0 else '-'
                              for _, _, l0 in nonzeros) for name in names),
        'not reported',
        '; '.join(sorted({_source(e) for _, experiments, _ in nonzeros
                          for e in experiments}))])
  return rows


def ddse_rows(results_dir: str) -> list[Row]:
  """The DDSE paper: its default setting, Fig. 5's claim, all claims."""
  combined = _read(results_dir, 'ddse_paper')
  if not combined:
    return []
  rows = []
  base = combined['base_config']
  default = {method: combined['units'][name]
             for method, name in combined['default'].items()}
  if 'ddse' in default:
    best = min(default.values(), key=lambda unit: unit['test_error'])
    rows.append([
        f"DDSE, default setting (s/n = {base['sparsity_ratio']:g}, m = "
        f"{base['code_dim']}, k = {base['num_stages']}): MNIST test error (%)",
        f"{default['ddse']['test_error']:.2f} (lowest of the six: "
        f"{best['method_label']}, {best['test_error']:.2f})",
        'lowest of the six methods (in figures only)', _source('ddse_paper')])
  sweep = combined['sweeps'].get('train_fraction')
  if sweep and 'ddse' in sweep['units']:
    errors = [combined['units'][name]['test_error']
              for name in sweep['units']['ddse']]
    low, full = (sweep['values'].index(min(sweep['values'])),
                 sweep['values'].index(max(sweep['values'])))
    rows.append([
        f"DDSE (Fig. 5): error increase from ts/t = {sweep['values'][full]:g}"
        f" to {sweep['values'][low]:g}, points",
        f'{errors[low] - errors[full]:+.2f}',
        f'+{paper.DDSE_LOSS_AT_5_PERCENT:.2f}', _source('ddse_paper')])
  claims = ddse_reports.paper_claims(combined)
  if claims:
    rows.append([
        "DDSE paper's claims (Sec. 4.2, Figs. 3–6) that hold in our runs",
        f'{sum(claim.holds for claim in claims)} of {len(claims)}',
        f'{len(claims)} of {len(claims)} (claimed)', _source('ddse_paper')])
  return rows


# The most-trained runs first: each method's number comes from the first
# group that has it; within a group (runs of one preset with different
# settings, e.g. the support-selection cap), from the run with its lowest
# validation NMSE.
UNROLLED_RUNS = (('unrolled_benchmark_long', 'unrolled_benchmark_long_ss16',
                  'unrolled_benchmark_long_warm',
                  'unrolled_benchmark_long_warm_best',
                  'unrolled_benchmark_long_ss16_warm',
                  'unrolled_benchmark_long_ss16_relative',
                  'unrolled_benchmark_long_ss16_warm_relative',
                  'unrolled_benchmark_long_warm_relative',
                  'unrolled_benchmark_long_relative',
                  'unrolled_benchmark_patient',
                  'unrolled_benchmark_patient_e2e_long',
                  'unrolled_benchmark_patient_e2e_best',
                  'unrolled_benchmark_patient_warm',
                  'unrolled_benchmark_patient_grad_decay',
                  'unrolled_benchmark_patient_grad_decay_e2e_best',
                  'unrolled_benchmark_patient_ss16_warm'),
                 ('unrolled_benchmark_paper',), ('unrolled_benchmark',))
UNROLLED_GROUPS = (('the LISTA family', ('lista', 'lista_shared', 'lista_cpss',
                                         'lista_cpss_shared', 'alista')),
                   ('our l0 encoders', ('deep_l0', 'deep_msparse',
                                        'alista_l0', 'alista_msparse')),
                   ('our variant, fine-tuned end to end after stage-wise '
                    'training', ('lista_e2e', 'lista_shared_e2e',
                                 'lista_cpss_e2e', 'lista_cpss_shared_e2e',
                                 'alista_e2e', 'alista_l0_e2e',
                                 'alista_msparse_e2e')))
UNROLLED_LABELS = {'lista': 'LISTA', 'lista_shared': 'LISTA (shared B, S)',
                   'lista_cpss': 'LISTA-CPSS',
                   'lista_cpss_shared': 'LISTA-CPSS (shared W)',
                   'alista': 'ALISTA', 'deep_l0': 'Deep l0 (SS)',
                   'deep_msparse': 'Deep M-sparse',
                   'alista_l0': 'Deep l0, ALISTA form',
                   'alista_msparse': 'Deep M-sparse, ALISTA form'}
UNROLLED_LABELS.update({name + '_e2e': label + ' + e2e'
                        for name, label in list(UNROLLED_LABELS.items())})


def _validation_nmse(row: dict[str, Any]) -> float:
  """A learned row's last validation NMSE (its last phase's); +inf for a
  row without phases (classical), so that any learned run wins."""
  phases = row.get('phases')
  return phases[-1]['final_eval_nmse_db'] if phases else float('inf')


def _unrolled_target(name: str) -> float:
  """A fine-tuned variant (<method>_e2e) is held to its method's target."""
  return paper.UNROLLED_TARGETS_DB[name.removesuffix('_e2e')]


def _unrolled_variant(results: dict[str, Any]) -> str:
  """What a run changed from the papers' settings (our variants), as its
  results record it; '' for the papers' settings."""
  flags = results.get('flags', {})
  changes = []
  if flags.get('max_support_percent', 13.0) != 13.0:
    changes.append(f"support cap {flags['max_support_percent']:g} % of p")
  if flags.get('new_stage_init', 'as_built') == 'previous_stage':
    changes.append('new stages start as a copy of the stage before')
  if flags.get('restore_best'):
    changes.append('phases end at their best validation epoch')
  if flags.get('relative_steps'):
    changes.append('stage-wise steps relative to each parameter')
  if flags.get('end_to_end_max_epochs') is not None:
    steps = (flags['end_to_end_max_epochs'] *
             results.get('config', {}).get('steps_per_epoch', 1))
    changes.append(f'end-to-end phases of at most {steps:,} steps')
  end_to_end_best = flags.get('end_to_end_restore_best')
  if end_to_end_best not in (None, bool(flags.get('restore_best'))):
    changes.append('end-to-end phases end at their ' + (
        'best validation epoch' if end_to_end_best else 'last epoch'))
  parts = ([f"ours: {', '.join(changes)}"] if changes else [])
  if flags.get('stage_decay_target', 'rate') == 'gradient':
    # The papers' codes, not our variant: their per-stage decay acts on the
    # gradients Adam sees (l0enc.stagewise.StagewiseConfig).
    parts.insert(0, "the stage decay on the gradients, as in the papers' "
                 'codes')
  return f" ({'; '.join(parts)})" if parts else ''


def unrolled_rows(results_dir: str) -> list[Row]:
  """The 250 x 500 benchmark: NMSE at the last stage, noiseless.

  One row per group of methods; each method from the most-trained run that
  has it (`UNROLLED_RUNS`), and the source names each run used.
  """
  tiers = [[(experiment, results) for experiment in tier
            if (results := _read(results_dir, experiment))]
           for tier in UNROLLED_RUNS]
  rows = []
  for group, names in UNROLLED_GROUPS:
    cells, used = [], []
    for name in names:
      found = next((runs for runs in (
          [(e, r) for e, r in tier if name in r['settings'].get('noiseless',
                                                                  {})]
          for tier in tiers) if runs), None)
      if not found:
        continue
      experiment, results = min(found, key=lambda run: _validation_nmse(
          run[1]['settings']['noiseless'][name]))
      curve = results['settings']['noiseless'][name]['test_nmse_db']
      cells.append((name, curve[-1], len(curve), experiment))
      if (experiment, results) not in used:
        used.append((experiment, results))
    if not cells:
      continue
    stages = sorted({num_stages for _, _, num_stages, _ in cells})
    sources = []
    for experiment, results in used:
      methods = ' / '.join(UNROLLED_LABELS[name] for name, _, _, where
                           in cells if where == experiment)
      sources.append(_source(experiment, f"{results.get('preset', '?')} "
                             f'preset{_unrolled_variant(results)}: '
                             f'{methods}'))
    rows.append([
        f'250x500 CS benchmark, {group}, NMSE (dB) at '
        + '/'.join(str(k) for k in stages) + ' stages, noiseless: '
        + ' / '.join(UNROLLED_LABELS[name] for name, _, _, _ in cells),
        ' / '.join(f'{value:.1f}' for _, value, _, _ in cells),
        ' / '.join(f'{_unrolled_target(name):.0f}' for name, _, _, _ in cells)
        + " (the papers' plots; ours held to -60)",
        '; '.join(sources)])
  return rows


HEADLINES: tuple[Callable[[str], list[Row]], ...] = (
    approximation_rows, task_rows, ddse_rows, unrolled_rows)


def summary(results_dir: str) -> str:
  """The Markdown summary table of every headline whose results exist."""
  rows = [row for headline in HEADLINES for row in headline(results_dir)]
  if not rows:
    return 'No results files found.\n'
  return (
      'Ours against the paper, each read from the results file in the last '
      'column by `experiments/summary.py`; the full tables and their '
      "reading are in each experiment's README.\n\n"
      + reporting.markdown_table(['headline', 'ours', 'paper', 'from'],
                                 rows))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if not os.path.isdir(FLAGS.results_dir):
    raise app.UsageError(f'--results_dir={FLAGS.results_dir} is not a '
                         'directory.')
  output = FLAGS.output or os.path.join(FLAGS.results_dir, 'summary.md')
  text = summary(FLAGS.results_dir)
  reporting.write_text_atomic(output, text)
  logging.info('Wrote %s', output)
  print(text)


if __name__ == '__main__':
  app.run(main)
