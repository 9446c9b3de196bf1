"""Tables and plots of the code-approximation experiment (Tables 1-3).

Everything here reads the JSON-able results of `approximation_training.run`
(also
as read back from a results file), so a report can be rebuilt
without recomputing anything.
"""

from typing import Any, Sequence

import matplotlib.figure

from l0enc import reporting
from l0enc import train
from l0enc.experiments import approximation
from l0enc.experiments import approximation_training
from l0enc.experiments import paper
from l0enc.experiments import units

_TITLES = {'l0': 'Prediction error (%), problem (1)',
           'msparse': 'Prediction error (%), problem (2)',
           'support': 'Support error (mismatched positions per sample), '
                      'problem (2)'}


def _setting(result: dict[str, Any]) -> str:
  return f"{result['config']['problem']}, p = {result['config']['code_dim']}"


def _runs_of(results: Sequence[dict[str, Any]],
             problem: str) -> list[dict[str, Any]]:
  return sorted((r for r in results if r['config']['problem'] == problem),
                key=lambda r: r['config']['code_dim'])


def paper_tables(results: Sequence[dict[str, Any]]) -> str:
  """Tables 1-3 in the paper's layout: ours, with the paper's in brackets.

  The paper's numbers are shown only beside MNIST runs at its code sizes.

  Args:
    results: outputs of `approximation_training.run`, any mix of problems
      and code sizes.

  Returns:
    Markdown: one table per problem (prediction error, %) and the support
    error table for problem (2), with a column per code size present.
  """
  sections = []
  for table in ('l0', 'msparse', 'support'):
    runs = _runs_of(results, 'l0' if table == 'l0' else 'msparse')
    if not runs:
      continue
    code_dims = [r['config']['code_dim'] for r in runs]
    metric = 'support_error' if table == 'support' else 'prediction_error'
    method_names = [name for name in runs[0]['rows']
                    if table != 'support' or name != 'Baseline encoder']
    body = []
    for name in method_names:
      cells = [name]
      for run_result, code_dim in zip(runs, code_dims):
        ours = run_result['rows'][name][metric]
        published = paper.APPROXIMATION_TABLES[table].get(name)
        on_paper_setting = (run_result['config']['dataset'] == 'mnist' and
                            code_dim in paper.APPROXIMATION_CODE_DIMS)
        cells.append(
            f'{ours:.2f}' if published is None or not on_paper_setting else
            f'{ours:.2f} '
            f'({published[paper.APPROXIMATION_CODE_DIMS.index(code_dim)]})')
      body.append(cells)
    with_paper = ' (paper)' if any(r['config']['dataset'] == 'mnist'
                                   for r in runs) else ''
    sections.append(f'**{_TITLES[table]}** — ours{with_paper}\n\n' +
                    reporting.markdown_table(
                        ['method'] + [f'p = {p}' for p in code_dims], body))
  return '\n'.join(sections)


def optimizer_table(results: Sequence[dict[str, Any]]) -> str:
  """Test prediction error (%) of each trained encoder by optimizer.

  For each optimizer, the candidate rate chosen on validation among that
  optimizer's; the row's rate and final validation error are given with it.
  Results written before both optimizers were trained have no such record
  and are left out ('' if none has it).
  """
  results = [r for r in results if 'rows_by_optimizer' in r]
  if not results:
    return ''
  body = []
  for result in sorted(results, key=lambda r: (r['config']['problem'],
                                               r['config']['code_dim'])):
    for model_name, key in (('Baseline encoder', 'baseline'),
                            (approximation.DEEP_NAMES[
                                result['config']['problem']], 'deep')):
      selection = result['learning_rate_selection'][key]
      for optimizer, metrics in result['rows_by_optimizer'][
          model_name].items():
        candidate = selection['by_optimizer'][optimizer]
        body.append([
            _setting(result), model_name, candidate,
            f"{selection['validation_error'][candidate]:.2f}",
            f"{metrics['prediction_error']:.2f}",
            'yes' if candidate == approximation_training.candidate_name(
                selection['optimizer'], selection['learning_rate']) else ''])
  return reporting.markdown_table(
      ['setting', 'encoder', 'optimizer, rate (best on validation)',
       'validation error (%)', 'test error (%)', 'chosen'], body)


def _settings_line(config: dict[str, Any]) -> str:
  initial_sigma = train.TrainConfig().initial_sigma
  sigma_schedule = (
      f'HELU sigma constant at {initial_sigma:g}'
      if config['min_sigma'] >= initial_sigma else
      f'HELU sigma {initial_sigma:g} divided by 10 each epoch down to '
      f"{config['min_sigma']:g}")
  candidates = [f'SGD {rate:g}' for rate in config['sgd_learning_rates']] + [
      f'Adam {rate:g}' for rate in config['adam_learning_rates']]
  stages = 'tied' if config.get('tied', True) else 'untied (our variant)'
  dropout = config.get('baseline_dropout_rates',
                       approximation.Config.baseline_dropout_rates)
  return (
      f"**Settings** ({config['dataset']}; {config['num_stages']} {stages} "
      f"stages; candidates "
      f"{' / '.join(candidates)}"
      f"{' (chosen on validation)' if len(candidates) > 1 else ''}, batch "
      f"{config['batch_size']}, {config['num_epochs']} epochs (baseline "
      f"{config['baseline_epochs']}, dropout "
      f"{' / '.join(f'{rate:g}' for rate in dropout)}), gradient clipping "
      f"{config['clip_norm']:g}, {sigma_schedule}; "
      f"{config['validation_fraction']:.0%} of the training signals held out "
      'for validation)')


def _problems_table(results: Sequence[dict[str, Any]]) -> str:
  def chosen(result, name):
    selection = result['learning_rate_selection'][name]
    return (f"{selection.get('optimizer', 'adam')} "
            f"{selection['learning_rate']:g}")

  def whitened(result):
    epsilon = result['config'].get('whitening_epsilon')
    return 'none' if epsilon is None else f'ZCA, eps = {epsilon:g}'

  def dictionary_lam(result):
    # A synthetic problem's dictionary is given, not learned.
    if result['config']['dataset'] != 'mnist':
      return '–'
    tight = ', then its tight frame' if result['config'].get(
        'tight_frame') else ''
    return f"{result['config']['dictionary_lam']:g}{tight}"

  def coherence(result):
    value = result['data'].get('dictionary_coherence')
    return '–' if value is None else f'{value:.2f}'

  return reporting.markdown_table(
      ['setting', 'whitening', 'dictionary l1 weight', 'train / test signals',
       'mean nonzeros of the optimal codes', '‖D‖₂²', 'max coherence',
       'chosen deep / baseline', 'deep encoder training (s)',
       'baseline training (s)', 'device'],
      [[_setting(r), whitened(r), dictionary_lam(r),
        f"{r['data']['num_train']} / {r['data']['num_test']}",
        f"{r['data']['mean_nonzeros_of_optimal_codes']:.1f}",
        f"{r['data']['dictionary_lipschitz']:.1f}", coherence(r),
        f"{chosen(r, 'deep')} / {chosen(r, 'baseline')}",
        f"{sum(e['seconds'] for e in r['history']['deep']):.0f}",
        f"{sum(e['seconds'] for e in r['history']['baseline']):.0f}",
        r['device']] for r in results])


def report(results: Sequence[dict[str, Any]]) -> str:
  """The Markdown report of one regime: tables, optimizers, speed, settings.

  Args:
    results: outputs of `approximation_training.run` for one regime (any
      problems and code sizes), JSON-able.

  Returns:
    Markdown.
  """
  results = [units.as_json(r) for r in results]
  # Through Config, so that results of an older layout read the same way.
  config = approximation.upgrade_config(results[0]['config'])
  speed = reporting.markdown_table(
      ['setting', 'test signals', 'encoder (s)', 'IHT, 10 it. (s)',
       'speed-up', 'device'],
      [[_setting(r), r['speed']['num_signals'],
        f"{r['speed']['encoder_seconds']:.4f}",
        f"{r['speed']['iht_10_seconds']:.4f}",
        f"{r['speed']['speedup']:.1f}x", r['device']] for r in results])
  optimizers = optimizer_table(results)
  optimizers = (f'**Each optimizer at its best rate** (chosen on validation '
                f'among its own candidates; test error)\n\n{optimizers}\n'
                if optimizers else '')
  return (
      f'{paper_tables(results)}\n{optimizers}'
      f"**Encoding the test set** (trained {config['num_stages']}-stage "
      'encoder against 10 IHT iterations; median of '
      f'{approximation_training.SPEED_REPEATS} runs after a warm-up)\n\n'
      f'{speed}\n'
      f'{_settings_line(config)}\n\n{_problems_table(results)}')


def plot(results: Sequence[dict[str, Any]], path: str) -> None:
  """Error against iterations / stages, and validation error per epoch.

  One row per code size p and, for each problem, two panels: the test
  prediction error of IHT and of normalized IHT after 1..10 iterations
  (lines), of the deep encoder with its K stages (star) and of the baseline
  encoder (dashed); then the validation prediction error of the two trained
  encoders after each epoch.
  """
  code_dims = sorted({r['config']['code_dim'] for r in results})
  problems = [p for p in approximation.PROBLEMS
              if any(r['config']['problem'] == p for r in results)]
  # The object-oriented API: no pyplot state, no backend switch for users.
  figure = matplotlib.figure.Figure(
      figsize=(4.2 * 2 * len(problems), 3.4 * len(code_dims)))
  axes = figure.subplots(len(code_dims), 2 * len(problems), squeeze=False)
  for result in results:
    config = result['config']
    row = code_dims.index(config['code_dim'])
    column = 2 * problems.index(config['problem'])
    errors, curves = axes[row, column], axes[row, column + 1]
    deep_name = approximation.DEEP_NAMES[config['problem']]
    setting = (f"{config['dataset']}, problem "
               f"{'(1)' if config['problem'] == 'l0' else '(2)'}, "
               f"p = {config['code_dim']}")
    for key, label in (('iht_curve', 'IHT (iterations)'),
                       ('normalized_iht_curve',
                        'normalized IHT (iterations)')):
      if key in result:
        curve = [point['prediction_error'] for point in result[key]]
        errors.plot(range(1, len(curve) + 1), curve, 'o-', label=label)
    errors.plot([config['num_stages']],
                [result['rows'][deep_name]['prediction_error']], '*',
                markersize=14,
                label=f"{deep_name} ({config['num_stages']} stages)")
    errors.axhline(result['rows']['Baseline encoder']['prediction_error'],
                   linestyle='--', color='gray', label='Baseline encoder')
    errors.set(yscale='log', xlabel='IHT iterations / encoder stages',
               ylabel='test prediction error (%)', title=setting)
    errors.legend(fontsize=7)
    for name, label in (('deep', deep_name), ('baseline', 'Baseline encoder')):
      history = result['history'][name]
      curves.plot([r['epoch'] for r in history],
                  [r['eval_metrics']['prediction_error'] for r in history],
                  label=label)
    curves.set(yscale='log', xlabel='epoch',
               ylabel='validation prediction error (%)',
               title=f'training, {setting}')
    curves.legend(fontsize=7)
  figure.tight_layout()
  reporting.save_figure_atomic(figure, path, dpi=100)
