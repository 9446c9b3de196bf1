"""Reconstructing the paper's unstated settings from its classical rows.

The l0 paper (Tables 1-3) reports IHT after 2, 5 and 10 iterations from
zero, as a percentage of the optimal codes. Those rows depend only on the
data, the preprocessing and the dictionary, not on any learned encoder, so
they are a fingerprint of the problem the paper solved. It does not say how
its dictionary was learned or whether its patches were whitened; this module
chooses those settings (a ZCA regularizer, the l1 weight of dictionary
learning, and whether the learned dictionary is replaced by its nearest
tight frame) on a small grid so that our IHT rows come closest to the
paper's.

The rule never looks at the test split, nor at any encoder's numbers: every
grid point is scored on the validation share of the training split
(`approximation.split_indices`), with the dictionary learned on the training
split as the experiment learns it (and cached where the experiment finds it).

Distance to the paper: the mean over the nine cells (Table 1, Table 2,
Table 3; 2, 5 and 10 iterations) of `|ln(ours / paper)|`, so that a cell
twice too high and one half too low weigh the same.
"""

import dataclasses
import itertools
import logging
import math
import os
from typing import Any, Sequence

import jax.numpy as jnp
import numpy as np

from l0enc import dictionary as dictionary_lib
from l0enc import reporting
from l0enc import solvers
from l0enc import validation
from l0enc.experiments import approximation
from l0enc.experiments import paper
from l0enc.experiments import units

TABLES = ('l0', 'msparse', 'support')
ITERATIONS = (2, 5, 10)


@dataclasses.dataclass(frozen=True)
class Grid:
  """The calibration's grid and the settings it keeps fixed.

  Attributes:
    whitening_epsilons: ZCA regularizers tried (added to the eigenvalues of
      the covariance of the unit-variance patches).
    dictionary_lams: l1 weights of the dictionary-learning coding step
      tried.
    tight_frames: whether the learned dictionary is replaced by its nearest
      tight frame (`approximation.Config.tight_frame`), each tried.
    dictionary_steps: minibatches of dictionary learning (the experiment
      must use the same).
    num_signals: validation signals scored per grid point (from the
      training split).
    lam: l0 weight of problem (1) (the paper's 0.5, in its scaling).
    m: sparsity M of problem (2).
    seed: seed of the dictionary and the split.
    literal_results: results.json of the unwhitened (literal) regime whose
      IHT rows are reported for reference; None (or '', as a command line
      gives it) for none.
  """
  whitening_epsilons: tuple[float, ...] = (0.03, 0.1, 0.3)
  dictionary_lams: tuple[float, ...] = (0.5, 1.0)
  tight_frames: tuple[bool, ...] = (False,)
  dictionary_steps: int = 600
  num_signals: int = 5000
  lam: float = 0.25
  m: int = 32
  seed: int = 0
  literal_results: str | None = None

  def __post_init__(self):
    for name in ('whitening_epsilons', 'dictionary_lams'):
      if not getattr(self, name):
        raise ValueError(f'{name} must hold at least one value.')
      validation.check_positive(name, getattr(self, name))
    if not self.tight_frames or not all(
        isinstance(value, bool) for value in self.tight_frames):
      raise ValueError('tight_frames must hold True and/or False, got '
                       f'{self.tight_frames!r}.')
    big = 2**31 - 1
    validation.check_int_in_range('dictionary_steps', self.dictionary_steps,
                                  1, big)
    validation.check_int_in_range('num_signals', self.num_signals, 1, big)
    validation.check_int_in_range('seed', self.seed, 0, big)
    if self.literal_results and not os.path.isfile(self.literal_results):
      raise ValueError('literal_results must name an existing results.json, '
                       f'got {self.literal_results!r}.')

  def configs(self, code_dims: Sequence[int],
              data_dir: str | None = None) -> list[approximation.Config]:
    """The experiment's setting at every grid point, each p in turn.

    Args:
      code_dims: the code sizes p, each one of the paper's.
      data_dir: the MNIST directory.

    Raises:
      ValueError: a bad value (named), or a p the paper does not report.
    """
    for code_dim in code_dims:
      paper_rows(code_dim)  # Checks that the paper has rows to compare.
    return [approximation.Config(
        dataset='mnist', problem='l0', code_dim=code_dim, lam=self.lam,
        m=self.m, seed=self.seed, data_dir=data_dir,
        dictionary_steps=self.dictionary_steps,
        dictionary_lam=dictionary_lam, whitening_epsilon=epsilon,
        tight_frame=tight_frame)
            for code_dim, epsilon, dictionary_lam, tight_frame in
            itertools.product(code_dims, self.whitening_epsilons,
                              self.dictionary_lams, self.tight_frames)]


def paper_rows(code_dim: int) -> dict[str, list[float]]:
  """The paper's IHT rows at `code_dim`: `{table: [2, 5, 10 iterations]}`."""
  if code_dim not in paper.APPROXIMATION_CODE_DIMS:
    raise ValueError(f'The paper reports p in {paper.APPROXIMATION_CODE_DIMS}'
                     f', got code_dim={code_dim}.')
  column = paper.APPROXIMATION_CODE_DIMS.index(code_dim)
  return {table: [paper.APPROXIMATION_TABLES[table][
      f'IHT ({k} iterations)'][column] for k in ITERATIONS]
          for table in TABLES}


def iht_rows(x: np.ndarray, dictionary: np.ndarray,
             config: approximation.Config) -> dict[str, Any]:
  """IHT's rows of Tables 1-3 on signals `x`, from their optimal codes.

  Args:
    x: signals, shape `(N, n)`.
    dictionary: shape `(n, p)`.
    config: the setting (its l0 weight, sparsity and solver tolerances; its
      problem is ignored: both are computed).

  Returns:
    `{'rows': {table: [error after 2, 5, 10 iterations]}, 'lipschitz':
    ||D||_2^2, 'coherence': max atom overlap, 'mean_nonzeros': of the
    problem (1) optimal codes, 'codes_iterations': {problem: the most IHT
    iterations any signal's optimal codes needed}}`.
  """
  rows, iterations, nonzeros = {}, {}, None
  for problem in approximation.PROBLEMS:
    setting = dataclasses.replace(config, problem=problem)
    result = solvers.optimal_codes(
        jnp.asarray(x), jnp.asarray(dictionary), tol=config.codes_tol,
        max_iterations=config.codes_max_iterations, **setting.problem_kwargs)
    codes = np.asarray(result.codes)
    iterations[problem] = int(np.max(result.num_iterations))
    curve = approximation.iht_curve(x, dictionary, codes, setting,
                                    max(ITERATIONS))
    rows[problem] = [curve[k - 1]['prediction_error'] for k in ITERATIONS]
    if problem == 'msparse':
      rows['support'] = [curve[k - 1]['support_error'] for k in ITERATIONS]
    else:
      nonzeros = float(np.mean(np.count_nonzero(codes, axis=1)))
  return {'rows': rows,
          'lipschitz': float(solvers.lipschitz_constant(
              jnp.asarray(dictionary))),
          'coherence': float(dictionary_lib.mutual_coherence(dictionary)),
          'mean_nonzeros': nonzeros, 'codes_iterations': iterations}


def distance(rows: dict[str, Sequence[float]],
             target: dict[str, Sequence[float]]) -> float:
  """Mean `|ln(ours / target)|` over every cell of `target` (see above)."""
  gaps = [abs(math.log(max(ours, 1e-12) / theirs))
          for table in target
          for ours, theirs in zip(rows[table], target[table], strict=True)]
  return sum(gaps) / len(gaps)


def largest_relative_gap(rows: dict[str, Sequence[float]],
                         target: dict[str, Sequence[float]]) -> float:
  """`max |ours / target - 1|` over the cells: within 0.3 is within ±30 %."""
  return max(abs(ours / theirs - 1)
             for table in target
             for ours, theirs in zip(rows[table], target[table], strict=True))


def select(points: Sequence[dict[str, Any]]) -> dict[int, dict[str, Any]]:
  """The grid point closest to the paper at each code size.

  Args:
    points: calibration points, each with `config` (its `code_dim`) and
      `distance`; ties go to the earlier point.

  Returns:
    `{code_dim: point}`.
  """
  chosen = {}
  for point in points:
    code_dim = point['config']['code_dim']
    if code_dim not in chosen or point['distance'] < chosen[code_dim][
        'distance']:
      chosen[code_dim] = point
  return chosen


def point_path(workdir: str, config: approximation.Config) -> str:
  tight = '_tight' if config.tight_frame else ''
  return os.path.join(
      workdir, f'p{config.code_dim}_zca{config.whitening_epsilon}_'
      f'lam{config.dictionary_lam:g}{tight}.json')


def calibrate_point(config: approximation.Config, workdir: str,
                    dictionary_dir: str, num_signals: int) -> dict[str, Any]:
  """Scores one grid point; resumable (a finished point is read back).

  Args:
    config: the experiment's setting at this point (MNIST, its code size,
      whitening regularizer and dictionary l1 weight).
    workdir: where the point's JSON is written.
    dictionary_dir: the dictionary cache shared with the experiment.
    num_signals: validation signals scored (the first of the split).

  Returns:
    `{'config', 'distance', 'largest_relative_gap', **iht_rows(...)}`.

  Raises:
    ValueError: the point's JSON holds another configuration.
  """
  def compute(_):
    x_train, _, dictionary = approximation.load_signals(config,
                                                        dictionary_dir)
    _, validation_part = approximation.split_indices(config, len(x_train))
    scored = iht_rows(x_train[validation_part[:num_signals]], dictionary,
                      config)
    target = paper_rows(config.code_dim)
    point = {'config': None,  # First, as points have always held it.
             'num_signals': min(num_signals, len(validation_part)),
             'distance': distance(scored['rows'], target),
             'largest_relative_gap': largest_relative_gap(scored['rows'],
                                                          target),
             **scored}
    logging.info('calibration: p = %d, whitening %s, dictionary l1 weight '
                 '%g: distance %.3f, IHT rows %s', config.code_dim,
                 config.whitening_epsilon, config.dictionary_lam,
                 point['distance'], point['rows'])
    return point

  # Saved without where the data was read from, which changes nothing.
  return units.run_unit(
      workdir, approximation.config_to_json(
          dataclasses.replace(config, data_dir=None)), compute,
      results_file=os.path.basename(point_path(workdir, config)),
      settings_key='config', ignore=('data_dir',),
      upgrade=approximation.upgrade_config)


# The settings a calibration grid varies; every other setting is fixed.
GRID_FIELDS = ('code_dim', 'whitening_epsilon', 'dictionary_lam',
               'tight_frame')


def finished_points(workdir: str,
                    config: approximation.Config) -> list[dict[str, Any]]:
  """Every point in `workdir` whose fixed settings are those of `config`.

  Args:
    workdir: the calibration's directory (one JSON file per point).
    config: any point of the grid: only its settings outside `GRID_FIELDS`
      are compared.

  Returns:
    The points, ordered by code size, regularizer, l1 weight and tight
    frame, their configs in today's form (`approximation.upgrade_config`).
  """
  fixed = lambda fields: {key: value for key, value in fields.items()
                          if key not in GRID_FIELDS + ('data_dir',)}
  wanted = fixed(approximation.config_to_json(config))
  points = []
  for name in sorted(os.listdir(workdir)):
    if name.startswith('p') and name.endswith('.json'):
      point = reporting.read_json(os.path.join(workdir, name))
      # Through Config, so that points written before a field existed get
      # its default.
      point['config'] = approximation.upgrade_config(point['config'])
      if fixed(point['config']) == wanted:
        points.append(point)
  return sorted(points, key=lambda point: tuple(
      point['config'][key] for key in GRID_FIELDS))


def read_choice(path: str) -> dict[int, dict[str, Any]]:
  """`{code_dim: {grid field: chosen value}}` (every `GRID_FIELDS` but p).

  Args:
    path: the `results.json` that experiments/calibrate_regime.py wrote (a
      choice written before tight frames were tried has none).
  """
  if not os.path.exists(path):
    raise ValueError(f'Calibration results {path} do not exist; run '
                     'experiments/calibrate_regime.py first.')
  choice = {}
  for code_dim, point in reporting.read_json(path)['chosen'].items():
    config = approximation.upgrade_config(point['config'])
    choice[int(code_dim)] = {name: config[name] for name in GRID_FIELDS
                             if name != 'code_dim'}
  return choice


def report(points: Sequence[dict[str, Any]],
           literal: Sequence[dict[str, Any]] = ()) -> str:
  """Markdown: the grid, the choice, and the paper's and literal rows.

  Args:
    points: every calibration point.
    literal: optional results of `approximation_training.run` without whitening
      (the previous regime) to show their IHT rows beside, for reference.
      They are on the test split and play no part in the choice.
  """
  chosen = select(points)
  cell = lambda values: ' / '.join(f'{v:.2f}' for v in values)
  sections = []
  for code_dim in sorted(chosen):
    body = []
    for point in points:
      if point['config']['code_dim'] != code_dim:
        continue
      config = point['config']
      body.append([
          f"{config['whitening_epsilon']}", f"{config['dictionary_lam']:g}",
          'yes' if config.get('tight_frame') else 'no',
          f"{point['lipschitz']:.2f}", f"{point['coherence']:.2f}",
          f"{point['mean_nonzeros']:.1f}",
          *(cell(point['rows'][table]) for table in TABLES),
          f"{point['distance']:.3f}",
          f"{point['largest_relative_gap']:.0%}",
          '**chosen**' if point is chosen[code_dim] else ''])
    published = paper_rows(code_dim)
    body.append(['paper', '', '', '', '', '', *(cell(published[table])
                                            for table in TABLES), '', '', ''])
    for result in literal:
      if (result['config']['code_dim'] == code_dim and
          result['config']['problem'] == 'msparse'):
        l0 = next(r for r in literal if r['config']['code_dim'] == code_dim
                  and r['config']['problem'] == 'l0')
        row = lambda res, metric: [res['rows'][f'IHT ({k} iterations)'][metric]
                                   for k in ITERATIONS]
        body.append([
            'none (literal; test split)',
            f"{result['config']['dictionary_lam']:g}", 'no',
            f"{result['data']['dictionary_lipschitz']:.2f}", '–',
            f"{l0['data']['mean_nonzeros_of_optimal_codes']:.1f}",
            cell(row(l0, 'prediction_error')),
            cell(row(result, 'prediction_error')),
            cell(row(result, 'support_error')), '', '', ''])
    sections.append(
        f'**p = {code_dim}** (IHT after 2 / 5 / 10 iterations from zero)\n\n' +
        reporting.markdown_table(
            ['whitening ε', 'dictionary l1 weight', 'tight frame', '‖D‖₂²',
             'max coherence',
             'nonzeros of optimal codes (1)', 'Table 1: error (%)',
             'Table 2: error (%)', 'Table 3: support error', 'distance',
             'largest gap', ''], body))
  return '\n'.join(sections)
