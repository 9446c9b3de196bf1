"""Tables, figures and the paper-claims check of the DDSE experiment.

They lay out the combined results of `ddse_sweeps.run_experiment` (or the
committed `results/ddse_*/results.json`): the six methods at the default
setting, one table and figure per sweep (the paper's Figs. 3-6), the
compactness of the default DDSE, and which claims of the paper's Sec. 4.2
our units support.
"""

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import matplotlib.figure
import numpy as np

from l0enc import ddse
from l0enc import reporting
from l0enc.experiments import ddse as ddse_unit
from l0enc.experiments import ddse_sweeps
from l0enc.experiments import paper


def _error(value: float) -> str:
  return f'{value:.2f}'


def default_table(combined: Mapping[str, Any]) -> str:
  """Markdown: the six methods at the default setting (test error %)."""
  rows = []
  for method in combined['methods']:
    unit = combined['units'][combined['default'][method]]
    history = unit['history']
    rows.append([
        unit['method_label'], _error(unit['test_error']),
        _error(unit['validation_error']), len(history),
        f"{history[0]['learning_rate']:g} / {history[-1]['learning_rate']:g}",
        unit['num_parameters'],
        '' if unit.get('parameter_counts') is None else
        unit['parameter_counts']['nonzero_weights'],
        f"{unit['train_seconds']:.0f}"])
  return reporting.markdown_table(
      ['method', 'test error (%)', 'validation error (%)', 'epochs',
       'first / last lr', 'parameters', 'nonzero W1/W2/W3',
       'train time (s)'], rows)


def _sweep_errors(combined: Mapping[str, Any], sweep: str
                  ) -> tuple[list[float], dict[str, list[float]]]:
  planned = combined['sweeps'][sweep]
  errors = {method: [combined['units'][name]['test_error'] for name in names]
            for method, names in planned['units'].items()}
  return planned['values'], errors


def sweep_table(combined: Mapping[str, Any], sweep: str) -> str:
  """Markdown: test error (%) of each method at each value of a sweep."""
  values, errors = _sweep_errors(combined, sweep)
  label = ddse_sweeps.SWEEPS[sweep].label
  return reporting.markdown_table(
      ['method'] + [f'{label} = {value:g}' for value in values],
      [[ddse_unit.METHOD_LABELS[method]] + [_error(e) for e in method_errors]
       for method, method_errors in errors.items()])


class Claim(NamedTuple):
  """One claim of the DDSE paper's Sec. 4.2, checked on our results.

  Attributes:
    figure: where the paper makes it ('Fig. 3', ...).
    claim: the claim, in the paper's words where short.
    ours: what our units show (numbers from `combined`).
    holds: whether our results support it.
  """
  figure: str
  claim: str
  ours: str
  holds: bool


def _short_label(method: str) -> str:
  """The paper's short name of a method: 'I' ... 'V' or 'DDSE'."""
  return ddse_unit.METHOD_LABELS[method].split(':')[0]


def _best_everywhere(values, errors, label):
  """Where DDSE has the lowest error of all methods, as (text, holds)."""
  lost = [f'{label} = {value:g} ({_winner(errors, i)})'
          for i, value in enumerate(values)
          if errors[ddse.DDSE_MODEL][i] > min(e[i] for e in errors.values())]
  text = (f'best at {len(values) - len(lost)} of {len(values)} values'
          + ('; not at ' + ', '.join(lost) if lost else ''))
  return text, not lost


def _winner(errors, index):
  method = min(errors, key=lambda method: errors[method][index])
  return (f'{_short_label(method)} '
          f'{errors[method][index]:.2f} vs DDSE '
          f'{errors[ddse.DDSE_MODEL][index]:.2f}')


def paper_claims(combined: Mapping[str, Any]) -> list[Claim]:
  """Checks the claims of the DDSE paper's Sec. 4.2 against `combined`.

  Only the claims whose sweep ran, with DDSE and the baselines they name
  among the methods, are checked.

  Args:
    combined: from `run_experiment`, finished.

  Returns:
    The `Claim`s, in the paper's order.
  """
  claims = []
  methods = set(combined['methods'])
  iv, v = ddse.LISTA_DROPOUT, ddse.DDSE_NO_SHORTCUTS
  if ddse.DDSE_MODEL not in methods:
    return claims
  sweeps = combined['sweeps']
  if 'sparsity_ratio' in sweeps:
    values, errors = _sweep_errors(combined, 'sparsity_ratio')
    ours, holds = _best_everywhere(values, errors, 's/n')
    claims.append(Claim('Fig. 3', 'DDSE has the lowest error of the six '
                        'methods at every s/n', ours, holds))
    best = values[int(np.argmin(errors[ddse.DDSE_MODEL]))]
    claims.append(Claim('Fig. 3', "DDSE's best s/n is about 0.25",
                        f'lowest DDSE error at s/n = {best:g} ('
                        f'{min(errors[ddse.DDSE_MODEL]):.2f})',
                        abs(best - 0.25) < 0.1))
    if v in methods:
      beaten = sum(d < b for d, b in zip(errors[ddse.DDSE_MODEL], errors[v]))
      claims.append(Claim('Fig. 3', 'DDSE outperforms baseline V at all s/n',
                          f'DDSE lower at {beaten} of {len(values)} values',
                          beaten == len(values)))
  if 'code_dim' in sweeps:
    values, errors = _sweep_errors(combined, 'code_dim')
    ours, holds = _best_everywhere(values, errors, 'm')
    claims.append(Claim('Fig. 4', 'DDSE consistently outperforms the others '
                        'as m grows from 800 to 2000', ours, holds))
    if ddse.FULLY_CONNECTED in methods:
      first, last = (errors[ddse.FULLY_CONNECTED][0],
                     errors[ddse.FULLY_CONNECTED][-1])
      claims.append(Claim('Fig. 4', 'baseline I degrades as m grows '
                          '(overfitting)', f'I: {first:.2f} at m = '
                          f'{values[0]:g}, {last:.2f} at m = {values[-1]:g}',
                          last > first))
  if 'train_fraction' in sweeps:
    values, errors = _sweep_errors(combined, 'train_fraction')
    low, full = int(np.argmin(values)), int(np.argmax(values))
    losses = {method: e[low] - e[full] for method, e in errors.items()}
    named = ', '.join(f'{_short_label(method)} '
                      f'{loss:+.2f}' for method, loss in losses.items())
    claims.append(Claim(
        'Fig. 5', f'from ts/t = 1 to {values[low]:g}, DDSE loses least '
        f'(paper at 0.05: DDSE +{paper.DDSE_LOSS_AT_5_PERCENT:.2f}, '
        + ', '.join(f'{name} > +{loss:g}' for name, loss in
                    paper.DDSE_BASELINE_LOSSES_AT_5_PERCENT_ABOVE.items())
        + ')',
        f'error change: {named}',
        losses[ddse.DDSE_MODEL] == min(losses.values())))
  if 'num_stages' in sweeps:
    values, errors = _sweep_errors(combined, 'num_stages')
    ours, holds = _best_everywhere(values, errors, 'k')
    claims.append(Claim('Fig. 6', 'DDSE has the lowest error at every k',
                        ours, holds))
    if {iv, v} <= methods:
      claims.append(Claim('Fig. 6', 'baseline IV gains on V as k grows',
                          f'IV - V: {errors[iv][0] - errors[v][0]:+.2f} at '
                          f'k = {values[0]:g}, '
                          f'{errors[iv][-1] - errors[v][-1]:+.2f} at k = '
                          f'{values[-1]:g}',
                          errors[iv][-1] - errors[v][-1]
                          < errors[iv][0] - errors[v][0]))
  return claims


def claims_table(claims: Sequence[Claim]) -> str:
  """Markdown: each checked claim, our numbers, and whether it holds."""
  return reporting.markdown_table(
      ['figure', "the paper's claim", 'ours (test error %)', 'holds here'],
      [[c.figure, c.claim, c.ours, 'yes' if c.holds else 'no']
       for c in claims])


def compactness_table(compactness: Mapping[str, Any]) -> str:
  """Markdown: size and speed of the default DDSE against dense forms."""
  c = compactness
  rows = [
      ['nonzero weights of W1, W2_i, W3_i', f"{c['nonzero_weights']:,}",
       ''],
      ['(2k+1) s m (the paper\'s count)', f"{c['ddse_bound']:,}",
       f"nonzeros / bound = {c['nonzeros_over_bound']:.3f}"],
      ['LISTA m n + k m^2', f"{c['lista_weights']:,}",
       f"nonzeros / LISTA = {c['nonzeros_over_lista']:.3f}"],
      ['dense W1, W2_i, W3_i entries (2k+1) m n', f"{c['dense_weights']:,}",
       ''],
      ['sparse export (savez_compressed of BCOO data + indices)',
       f"{c['sparse_export_bytes']:,} B",
       f"sparse / dense npz = {c['sparse_over_dense_bytes']:.3f}"],
      ['dense weights, np.savez', f"{c['dense_npz_bytes']:,} B", ''],
      ['dense weights, np.savez_compressed',
       f"{c['dense_npz_compressed_bytes']:,} B", ''],
      [f"features of {c['num_test_signals']:,} test images (batches of "
       f"{c['timing_batch_size']}), dense matmuls",
       f"{c['dense_seconds'] * 1e3:.1f} ms", ''],
      [f"features of {c['num_test_signals']:,} test images (batches of "
       f"{c['timing_batch_size']}), sparse (BCOO) matmuls",
       f"{c['sparse_seconds'] * 1e3:.1f} ms",
       f"sparse / dense time = {c['sparse_over_dense_seconds']:.2f}"],
  ]
  return reporting.markdown_table(['quantity', 'value', 'ratio'], rows)


def budget_caption(combined: Mapping[str, Any], preset: str,
                   note: str = '') -> str:
  """One line on the training budget behind the numbers."""
  base = combined['base_config']
  augmentation = ('no augmentation' if not any(
      base[name] for name in ('max_rotation_degrees', 'max_scale_change',
                              'max_blur_sigma', 'noise_stddev')) else
                  f"augmentation: rotation <= {base['max_rotation_degrees']:g}"
                  f" deg, scale +-{base['max_scale_change']:g}, blur sigma <= "
                  f"{base['max_blur_sigma']:g} px, noise "
                  f"{base['noise_stddev']:g}, no flips")
  if base['learning_rate'] is None:
    rates = ', '.join(
        f'{_short_label(method)} {rate:g}'
        for method, rate in ddse_unit.DEFAULT_LEARNING_RATES.items())
    rates = f'initial lr per method, tuned on validation ({rates})'
  else:
    rates = f"initial lr {base['learning_rate']:g}"
  text = (f"Preset '{preset}', {base['dataset']}: {base['num_epochs']} "
          f"epoch(s) per unit, SGD, {rates} (x"
          f"{base['lr_decay_factor']:g} after {base['lr_patience']} epochs "
          f"without validation improvement), momentum {base['momentum']:g}, "
          f"batch {base['batch_size']}, PGD every {base['project_every']} "
          f"steps; defaults s/n = {base['sparsity_ratio']:g}, m = "
          f"{base['code_dim']}, k = {base['num_stages']}; {augmentation}; "
          f"test error of the final (projected) model; device "
          f"{combined['device']}.")
  return f'{text} {note}'.strip()


def sweep_figure(combined: Mapping[str, Any], sweep: str,
                 caption: str = '') -> matplotlib.figure.Figure:
  """Test error (%) against the swept variable, one line per method.

  Args:
    combined: from `run_experiment`.
    sweep: a sweep of `combined`.
    caption: printed under the axes (the budget).

  Returns:
    A `matplotlib.figure.Figure` (object-oriented API, no pyplot).
  """
  values, errors = _sweep_errors(combined, sweep)
  spec = ddse_sweeps.SWEEPS[sweep]
  figure = matplotlib.figure.Figure(figsize=(6.4, 5.2))
  axes = figure.add_axes((0.12, 0.3, 0.84, 0.62))
  for method, method_errors in errors.items():
    # A fixed colour and marker per method, the same in every figure.
    index = ddse.MODEL_KINDS.index(method)
    axes.plot(values, method_errors, marker='osD^vP'[index],
              color=f'C{index}', label=ddse_unit.METHOD_LABELS[method],
              linewidth=2.2 if method == ddse.DDSE_MODEL else 1.2)
  axes.set(xlabel=spec.label, ylabel='test error (%)',
           title=f'MNIST error vs {spec.label} (paper {spec.figure})'
           if combined['base_config']['dataset'] == 'mnist' else
           f"{combined['base_config']['dataset']} error vs {spec.label}")
  if spec.field == 'train_fraction':
    axes.set_xscale('log')
  axes.set_xticks(values)
  axes.set_xticklabels([f'{value:g}' for value in values])
  axes.grid(alpha=0.3)
  axes.legend(fontsize=7)
  if caption:
    figure.text(0.02, 0.02, caption, fontsize=6.5, wrap=True, va='bottom')
  return figure


def report(combined: Mapping[str, Any], caption: str) -> str:
  """The Markdown report: default table, one table per sweep, compactness."""
  base = combined['base_config']
  sections = [f'Budget of every number below: {caption}\n',
              f"**Default setting** (s/n = {base['sparsity_ratio']:g}, m = "
              f"{base['code_dim']}, k = {base['num_stages']}, ts/t = "
              f"{base['train_fraction']:g}): test error (%) of the methods, "
              'and the validation error of the same final model.\n\n'
              + default_table(combined)]
  for sweep in combined['sweeps']:
    spec = ddse_sweeps.SWEEPS[sweep]
    sections.append(f'**Test error (%) vs {spec.label}** (paper '
                    f'{spec.figure}; the other settings at their defaults).'
                    '\n\n' + sweep_table(combined, sweep))
  claims = paper_claims(combined)
  if claims:
    sections.append("**The paper's claims (Sec. 4.2), checked on the units "
                    'above** (test errors; "holds" is computed by '
                    '`l0enc.experiments.ddse_reports.paper_claims`).\n\n'
                    + claims_table(claims))
  retried = {name: unit['diverged_epochs']
             for name, unit in combined['units'].items()
             if unit.get('diverged_epochs')}
  if retried:
    sections.append(
        'Units whose training diverged (non-finite loss) and were retried '
        'from the epoch before at the learning rate '
        f"x{base['lr_decay_factor']:g} (0-based epochs): "
        + '; '.join(f'{name} {epochs}' for name, epochs in retried.items())
        + '.\n')
  if combined.get('compactness'):
    sections.append('**Compactness of the default DDSE** (Secs. 3.3.1-3.3.2; '
                    'timings in one process, median of '
                    f"{combined['compactness']['timing_repeats']} after a "
                    f"warm-up, device {combined['compactness']['device']})."
                    '\n\n'
                    + compactness_table(combined['compactness']))
  return '\n'.join(sections)
