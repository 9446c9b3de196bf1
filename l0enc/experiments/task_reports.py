"""Tables and plots of the classification and clustering experiments.

`paper_table` lays one data set's results (the output of
`classification.run` or `clustering.run`) out like the paper's Tables 4-7,
beside the paper's numbers (`paper.TASK_TABLES`); `nonzeros_table` and
`scale_table` show what end-to-end training did to the codes and the
thresholds; `plot_learning_curves` and `plot_confusion_matrix` draw them.
"""

from typing import Any, Callable, Sequence

import matplotlib.figure
import numpy as np

from l0enc import reporting
from l0enc.experiments import classification
from l0enc.experiments import paper

DATASET_TITLES = {'synthetic': 'Synthetic Gaussian mixture',
                  'mnist': 'MNIST', 'indian_pines': 'AVIRIS Indian Pines',
                  'coil20': 'COIL-20', 'pie': 'CMU PIE'}


def _metric(result: dict[str, Any], experiment: str) -> float:
  return result['test_error' if experiment == 'classification' else 'error']


_AUGMENTATION = classification.AUGMENTATION
_AUGMENTATION_CAPTION = (
    'augmented afresh each epoch: rotation <= '
    f'{_AUGMENTATION.max_rotation_degrees:g} degrees, scale within '
    f'{_AUGMENTATION.max_scale_change:.0%}, blur <= '
    f'{_AUGMENTATION.max_blur_sigma:g} px, noise '
    f'{_AUGMENTATION.noise_stddev:g} (pixels in [0, 1])')


def _caption(results: dict[str, Any]) -> str:
  config, data = results['config'], results['data']
  dataset = config['dataset']
  learned_on = ('the training' if results['experiment'] == 'classification'
                else 'all the')
  train_setting = (
      f"{config['num_epochs']} epochs end to end (tuned LISTA first "
      f"{config['lista_pretrain_epochs']} epochs of l1-code regression), "
      f"batch {config['batch_size']}, {config['optimizer']} at "
      f"{config['learning_rate']:g} after clipping to norm "
      f"{config['clip_norm']:g}, HELU_sigma from 0.2 (/10 per epoch, floor "
      f"{config['min_sigma']:g}), K = {config['num_stages']} stages, "
      f'dictionary learned on {learned_on} signals (lam = {config["lam"]:g}, '
      f"{config['dictionary_steps']} steps); "
      + (_AUGMENTATION_CAPTION if config.get('augment') else 'no augmentation'))
  if config['l0_lam'] is not None:
    train_setting += (f"; Deep l0 initialized with l0 weight "
                      f"{config['l0_lam']:g}")
  if results['experiment'] == 'classification':
    if 'tdsc' in config['encoders']:
      train_setting += (f"; TDSC: elastic net with lam2 = "
                        f"{config['tdsc_lam2']:g}, {config['tdsc_iterations']}"
                        ' FISTA iterations, atoms in the unit ball')
    return (f"**{DATASET_TITLES[dataset]}: classification error (%)** on the "
            f"test set ({data['num_test']} samples) after the last epoch; "
            f"trained on {data['num_train']} samples, {data['num_validation']}"
            f" more held out for validation; {data['description']}; "
            f"{train_setting}. Ours (paper).")
  return (f"**{DATASET_TITLES[dataset]}: clustering error (%)** over all "
          f"{data['num_samples']} samples after the best matching of clusters "
          f"to classes; {data['description']}; {train_setting}; trained "
          "without labels by regularized information maximization (gamma = "
          f"{config['marginal_weight']:g}, head weight decay "
          f"{config['head_weight_decay']:g}), head initialized by k-means on "
          "the untrained codes. Ours (paper).")


def _units_by_row(results: dict[str, Any]
                  ) -> dict[str, dict[int, dict[str, Any]]]:
  """`{table row: {code size: unit result}}`, rows in the order run."""
  by_row = {}
  for result in results['units'].values():
    by_row.setdefault(result['row'], {})[result['unit']['code_dim']] = result
  return by_row


def _table_header(code_dims: Sequence[int]) -> list[str]:
  return ['method'] + [f'p = {code_dim}' for code_dim in code_dims]


def paper_table(results: dict[str, Any]) -> str:
  """One data set's table in the paper's layout: ours (paper's), in %.

  Rows: the references (paper-only rows show a dash for ours), tuned LISTA,
  Deep l0-Regularized, Deep M-Sparse per M; columns: the code sizes run.
  The paper's numbers appear beside ours at its code sizes.

  Args:
    results: the output of `run` for one data set.

  Returns:
    Markdown: a caption with the settings, then the table.
  """
  experiment = results['experiment']
  dataset = results['config']['dataset']
  code_dims = results['config']['code_dims']
  published = paper.TASK_TABLES.get(dataset, {})
  by_row = _units_by_row(results)
  rows = []
  if any(code_dim in paper.TASK_CODE_DIMS for code_dim in code_dims):
    # The paper's rows that were not run, too.
    rows = [name for name in published if name not in by_row]
  rows += list(by_row)

  def cell(row, code_dim):
    found = by_row.get(row, {})
    result = found.get(code_dim, found.get(0))  # 0: independent of p.
    ours = '—' if result is None else f'{_metric(result, experiment):.2f}'
    if row in published and code_dim in paper.TASK_CODE_DIMS:
      number = published[row][paper.TASK_CODE_DIMS.index(code_dim)]
      return f'{ours} ({number:.2f})'
    return ours

  body = [[row] + [cell(row, code_dim) for code_dim in code_dims]
          for row in rows]
  return (_caption(results) + '\n\n' + reporting.markdown_table(
      _table_header(code_dims), body))


def _before_after_table(results: dict[str, Any], caption: str,
                        cell: Callable[[dict[str, Any]], str | None]) -> str:
  """A table of `cell(unit result)` per method and code size.

  Rows whose cells are all None (the quantity does not apply) are left out,
  and so is the whole table ('') if no row is left; a unit not run shows a
  dash.
  """
  code_dims = results['config']['code_dims']
  body = []
  for row, found in _units_by_row(results).items():
    cells = [None if found.get(code_dim) is None else cell(found[code_dim])
             for code_dim in code_dims]
    if any(value is not None for value in cells):
      body.append([row] + ['—' if value is None else value
                           for value in cells])
  if not body:
    return ''
  return caption + '\n\n' + reporting.markdown_table(
      _table_header(code_dims), body)


def nonzeros_table(results: dict[str, Any]) -> str:
  """Mean nonzeros of the codes, before -> after end-to-end training.

  Shows whether the task loss kept the codes sparse: of the test codes for
  classification, of every sample's code for clustering. "Before" is the
  encoder as initialized (tuned LISTA: after its code regression); units
  written before it was recorded show the "after" value only, units that
  recorded neither (k-means references, older clustering runs) no row.

  Args:
    results: the output of `run` for one data set.

  Returns:
    Markdown: a one-line caption, then a table with the methods as rows and
    the code sizes as columns; '' if no unit recorded it.
  """
  key = ('mean_test_code_nonzeros' if results['experiment'] ==
         'classification' else 'mean_code_nonzeros')
  codes = ('the test codes' if results['experiment'] == 'classification'
           else 'the codes of all samples')

  def cell(result):
    if key not in result:
      return None
    after = f'{result[key]:.1f}'
    before = result.get(f'initial_{key}')
    return after if before is None else f'{before:.1f} → {after}'

  return _before_after_table(
      results, f'Mean nonzeros of {codes} (of p), before → after '
      'end-to-end training (one number: after only, for units run before the '
      '"before" was recorded):', cell)


def validation_table(results: dict[str, Any]) -> str:
  """The validation error (%) after the last epoch, per method and p.

  What a choice between settings (an eps, a variant) is made on: never the
  test split.

  Args:
    results: the output of `classification.run` for one data set.

  Returns:
    Markdown: a caption, then the table.
  """
  return _before_after_table(
      results, 'Validation error (%) after the last epoch (what settings '
      'are chosen on):',
      lambda result: f"{result['validation_error']:.2f}")


def scale_table(results: dict[str, Any]) -> str:
  """How far W and theta moved in end-to-end training (thresholding rows).

  The RMS of the input weights W and the mean threshold theta, before ->
  after, for the units that recorded them (tuned LISTA and Deep l0; units
  run before they were recorded show a dash).

  Args:
    results: the output of `run` for one classification data set.

  Returns:
    Markdown: a caption, then the table; '' if no unit recorded them.
  """
  def cell(result):
    before, after = (result.get('initial_encoder_scale'),
                     result.get('encoder_scale'))
    if not before or not after:
      return None
    return ', '.join(
        f'{name} {before[key]:.2g} → {after[key]:.2g}' for name, key in
        (('W', 'input_weight_rms'), ('θ', 'mean_threshold')))

  return _before_after_table(
      results, 'Scale of the thresholding encoders, before → after end-to-end '
      'training: RMS of the input weights W, mean of the thresholds θ (a code '
      'entry survives where |W x + S z| exceeds θ):', cell)


def best_classifier(results: dict[str, Any]) -> str:
  """The unit with the lowest validation error (ties: table order)."""
  trained = {name: result for name, result in results['units'].items()
             if 'validation_error' in result}
  if not trained:
    raise ValueError(f"No unit of {results['config']['dataset']} has "
                     'finished: nothing to report yet.')
  return min(trained, key=lambda name: trained[name]['validation_error'])


def plot_learning_curves(results: Sequence[dict[str, Any]],
                         path: str) -> None:
  """Per data set and p: the monitored error and the train loss per epoch.

  Classification: validation error; clustering: clustering error of all
  samples (monitoring only). One column per (data set, p), two rows.
  """
  panels = [(result, code_dim) for result in results
            for code_dim in result['config']['code_dims']]
  # One colour per row across every panel, in the order rows first appear,
  # so a row keeps its colour where panels have different rows.
  rows = dict.fromkeys(unit['row'] for result in results
                       for unit in result['units'].values())
  colors = {row: f'C{index}' for index, row in enumerate(rows)}
  figure = matplotlib.figure.Figure(figsize=(4.2 * len(panels), 6.5))
  axes = figure.subplots(2, len(panels), squeeze=False)
  for column, (result, code_dim) in enumerate(panels):
    classification = result['experiment'] == 'classification'
    top, bottom = axes[0, column], axes[1, column]
    for unit in result['units'].values():
      if unit['unit']['code_dim'] != code_dim or 'history' not in unit:
        continue
      epochs = [record['epoch'] for record in unit['history']]
      style = dict(label=unit['row'], color=colors[unit['row']])
      top.plot(epochs, [record['eval_metrics']['error']
                        for record in unit['history']], **style)
      bottom.plot(epochs, [record['train_loss'] for record in unit['history']],
                  **style)
    title = f"{DATASET_TITLES[result['config']['dataset']]}, p = {code_dim}"
    top.set(title=title, xlabel='epoch',
            ylabel=('validation error (%)' if classification else
                    'clustering error (%), monitoring'))
    bottom.set(xlabel='epoch',
               ylabel=('train cross entropy' if classification else
                       'train loss (RIM)'))
    top.legend(fontsize=7)
  figure.tight_layout()
  reporting.save_figure_atomic(figure, path, dpi=110)


def plot_confusion_matrix(results: dict[str, Any], path: str) -> str:
  """The test confusion matrix of the best classifier (by validation).

  Returns:
    The unit name drawn.
  """
  name = best_classifier(results)
  unit = results['units'][name]
  counts = np.asarray(unit['confusion_matrix'])
  # Rows normalized: the share of each true class given each prediction.
  shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
  figure = matplotlib.figure.Figure(figsize=(6, 5.2))
  axes = figure.subplots()
  image = axes.imshow(shares, cmap='Blues', vmin=0, vmax=1)
  figure.colorbar(image, ax=axes, label='share of the true class')
  if len(counts) <= 20:
    axes.set_xticks(range(len(counts)))
    axes.set_yticks(range(len(counts)))
    for (i, j), count in np.ndenumerate(counts):
      if count:
        axes.text(j, i, str(count), ha='center', va='center', fontsize=6,
                  color='white' if shares[i, j] > 0.5 else 'black')
  axes.set(xlabel='predicted class', ylabel='true class',
           title=(f"{DATASET_TITLES[results['config']['dataset']]}: "
                  f"{unit['row']}, p = {unit['unit']['code_dim']}\n"
                  f"test error {unit['test_error']:.2f}% (chosen by "
                  f"validation, {unit['validation_error']:.2f}%)"))
  # Long row names (our variants) must fit the figure's width.
  axes.title.set_fontsize(9 if len(unit['row']) > 30 else 12)
  figure.tight_layout()
  reporting.save_figure_atomic(figure, path, dpi=110)
  return name
