r"""The standard unrolled-encoder benchmark: NMSE per stage on 250 x 500 CS.

The problem of the LISTA-CPSS and ALISTA papers, generated from `seed` (our
own matrix and test set, `l0enc.synthetic.make_synthetic_problem`): D is a
250 x 500 Gaussian matrix with unit-norm columns, codes have Bernoulli(0.1)
supports with N(0, 1) values, x = D a, noiseless and at SNR 40 dB. Training
batches are fresh samples of a stream (never repeated); the validation set
(phase plateaus, lambda of the classical rows) and the 1,000 test codes are
fixed. Every method has 16 stages (iterations):

  classical  ISTA, FISTA, IHT (l0 penalty) and M-sparse IHT at 16
             iterations, lambda (or M) chosen on the validation set; FISTA
             to convergence (the floor an l1 solver reaches with unlimited
             iterations), lambda chosen on validation;
  learned    LISTA (Gregor and LeCun; untied, and with one B and S shared
             by the stages as in the field's code, `lista_shared`), LISTA-CP
             and LISTA-CPSS (Chen et al. 2018; untied, and with one W shared
             by the stages, the codes' default, `lista_cpss_shared`), ALISTA
             (Liu et al. 2019),
             our Deep l0 encoder (untied,
             with support selection) and Deep M-sparse encoder (untied, M
             per stage), and the two in the ALISTA form (analytic W, only
             per-stage step sizes and thresholds learned):
             `l0enc.lista.ALISTA(neuron='helu' | 'top_m')`;
  variants   <method>_e2e (ours): a learned method's trained encoder, then
             end-to-end phases on the last stage's loss (`fine_tuned_row`),
             reported beside the method as its ablation.

Learned methods are trained stage-wise (`l0enc.stagewise`, the papers'
recipe) or end to end (`training`). Each (setting, method) is a resumable
unit in <workdir>/<setting>/<method>/: kill the run and start the same
command again, finished units are read back and the interrupted one resumes.

    python experiments/unrolled_benchmark.py                 # quick preset
    python experiments/unrolled_benchmark.py \
        --config=experiments/configs/unrolled_benchmark_paper.py  # one GPU
    python experiments/unrolled_benchmark.py --methods=alista --settings=0 \
        --config.num_stages=8

The settings of the problem and the training are a `get_config()` file
(`--config`; the fields of `Settings`), one per preset:
`experiments/configs/unrolled_benchmark_quick.py` (the default: two shared
CPU cores, about 40 minutes, far from converged) and
`unrolled_benchmark_paper.py` (the papers' phases, for one GPU) and
`unrolled_benchmark_long.py` (long phases for the ALISTA forms on the CPU,
run over several sessions: it resumes) and `unrolled_benchmark_patient.py`
(the papers' stopping rule, phases of up to 10,000 steps, resumed); any field
can be overridden as `--config.<field>=<value>`. Which methods and noise
settings run, and where, are ordinary flags.

Writes results.json, results.md, README.md (the tables and their reading),
nmse_per_stage.png and training_curves.png to --output_dir.
"""

import dataclasses
import logging as python_logging
import os
import platform
import time
from typing import Any

from absl import app
from absl import flags
from absl import logging
from flax import nnx
import jax
import matplotlib.figure
import numpy as np

from l0enc import checkpoint
from l0enc import lista
from l0enc import metrics
from l0enc import models
from l0enc import reporting
from l0enc import solvers
from l0enc import stagewise
from l0enc import synthetic
from l0enc import validation
from l0enc.experiments import configs
from l0enc.experiments import paper

NOISELESS = 'noiseless'
CLASSICAL = ('ista', 'fista', 'iht', 'iht_m', 'fista_converged')
LEARNED = ('lista', 'lista_shared', 'lista_cp', 'lista_cpss',
           'lista_cpss_shared', 'alista', 'deep_l0', 'deep_msparse',
           'alista_l0', 'alista_msparse')
# Our variant: a learned method trained as usual, then end to end on the
# last stage's loss from where that left off (`fine_tuned_row`).
FINE_TUNED_SUFFIX = '_e2e'
FINE_TUNED = tuple(method + FINE_TUNED_SUFFIX for method in LEARNED)
METHODS = CLASSICAL + LEARNED + FINE_TUNED
LABELS = {
    'ista': 'ISTA', 'fista': 'FISTA', 'iht': 'IHT, problem (1)',
    'iht_m': 'IHT, problem (2)', 'fista_converged': 'FISTA, converged',
    'lista': 'LISTA', 'lista_shared': 'LISTA, shared B and S',
    'lista_cp': 'LISTA-CP', 'lista_cpss': 'LISTA-CPSS',
    'lista_cpss_shared': 'LISTA-CPSS, shared W',
    'alista': 'ALISTA', 'deep_l0': 'Deep l0 (SS)',
    'deep_msparse': 'Deep M-sparse (M per stage)',
    'alista_l0': 'Deep l0, ALISTA form (SS)',
    'alista_msparse': 'Deep M-sparse, ALISTA form',
}
LABELS.update({method + FINE_TUNED_SUFFIX: LABELS[method]
               + ' + end to end (ours)' for method in LEARNED})
LAM_GRID = tuple(float(v) for v in np.geomspace(1e-3, 1.0, 13))
# Converged FISTA's grid goes further down, the same steps: noiseless, its
# best lambda tends to 0 (basis pursuit), where convergence takes thousands
# of iterations (`fista_max_iterations`).
FLOOR_LAM_GRID = tuple(float(v) for v in np.geomspace(1e-5, 1.0, 21))
# M of problem (2), as multiples of the expected number of nonzeros (50).
M_GRID_FACTORS = (0.8, 1.0, 1.2, 1.5, 2.0)

TRAININGS = ('stagewise', 'end_to_end')
PRESETS = ('quick', 'paper', 'long', 'patient')
_CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs')


@dataclasses.dataclass(frozen=True)
class Settings:
  """The problem and the training of the benchmark: the fields of `--config`.

  `experiments/configs/unrolled_benchmark_<preset>.py` holds each preset's
  values (see their docstrings).

  Attributes:
    preset: 'quick', 'paper', 'long' or 'patient': names the report and the
      default workdir and output directory.
    note: the report's note on the preset.
    num_stages: stages (iterations) of every method.
    signal_dim: n.
    code_dim: p.
    nonzero_prob: probability that a code entry is nonzero.
    num_test: fixed test codes.
    num_validation: fixed validation codes.
    seed: seed of the matrix, the stream and the sets.
    training: 'stagewise' (the papers' recipe) or 'end_to_end'.
    batch_size: training batch (the papers' 64).
    learning_rate: base Adam rate (the papers' 5e-4).
    end_to_end_rate: base Adam rate of the end-to-end phases of the
      fine-tuned variants (`fine_tuned_row`), relative to each parameter's
      size.
    refine_decays: refinement rates as multiples of the base rate.
    stage_decay: rates of earlier stages are multiplied by this after each
      stage (the papers' 0.3).
    stage_decay_target: 'rate' (the multipliers scale the steps: the
      literal reading) or 'gradient' (they scale the gradients Adam sees, as
      the papers' codes do; `StagewiseConfig.stage_decay_target`).
    adam_eps: Adam's epsilon on our loss (the codes' 1e-8 on theirs is
      `1e-8 / (batch_size / 2)` on ours; `StagewiseConfig.adam_eps`).
    steps_per_epoch: steps between validations.
    patience: validations without improvement that end a phase.
    min_relative_improvement: an improvement smaller than this fraction of
      the phase's best validation loss does not count (0: any new minimum
      counts, as in the papers' codes).
    max_epochs: most validations per phase.
    end_to_end_max_epochs: most validations per end-to-end phase of the
      fine-tuned variants (ours); None: `max_epochs`.
    end_to_end_restore_best: whether the end-to-end phases of the fine-tuned
      variants end at their best validation epoch (ours); None:
      `restore_best`.
    compile_per_stage: phases of stage t run stages 1..t only, one
      compilation per stage (`StagewiseConfig.compile_per_stage`).
    new_stage_init: 'as_built' (the papers') or 'previous_stage' (ours: a
      new stage starts as a copy of the trained stage before it;
      `StagewiseConfig.new_stage_init`).
    restore_best: end each phase at its epoch with the best validation loss
      (ours; the papers keep the last; `StagewiseConfig.restore_best`).
    relative_steps: every stage-wise update scaled by the size of what it
      updates, `learning_rate` then a fraction of each parameter (ours; the
      papers' steps are absolute; `StagewiseConfig.relative_steps`).
    l0_lam: l0 weight that initializes the Deep l0 thresholds; None: the one
      IHT chose on validation (for deep_l0), the best on validation of the
      untrained encoder (for alista_l0).
    max_support_percent: cap of the support selection's p_k of LISTA-CPSS,
      ALISTA and the Deep l0 encoders, in percent of p (the papers' 13).
    max_m: largest M of the M-sparse encoders (M per stage grows to it).
    m_growth: M of stage k is `min(k * m_growth, max_m)`.
    fista_max_iterations: cap of converged FISTA.
  """
  preset: str
  note: str
  num_stages: int
  signal_dim: int
  code_dim: int
  nonzero_prob: float
  num_test: int
  num_validation: int
  seed: int
  training: str
  batch_size: int
  learning_rate: float
  end_to_end_rate: float
  refine_decays: tuple[float, ...]
  stage_decay: float
  stage_decay_target: str
  adam_eps: float
  steps_per_epoch: int
  patience: int
  min_relative_improvement: float
  max_epochs: int
  end_to_end_max_epochs: int | None
  end_to_end_restore_best: bool | None
  compile_per_stage: bool
  new_stage_init: str
  restore_best: bool
  relative_steps: bool
  l0_lam: float | None
  max_support_percent: float
  max_m: int
  m_growth: int
  fista_max_iterations: int

  def __post_init__(self):
    validation.check_choice('preset', self.preset, PRESETS)
    validation.check_choice('training', self.training, TRAININGS)
    for name in ('num_stages', 'signal_dim', 'code_dim', 'num_test',
                 'num_validation', 'batch_size', 'max_m', 'm_growth',
                 'fista_max_iterations'):
      validation.check_int_in_range(name, getattr(self, name), 1, 2**31 - 1)
    validation.check_int_in_range('seed', self.seed, 0, 2**31 - 1)
    validation.check_fraction('nonzero_prob', self.nonzero_prob)
    validation.check_fraction('stage_decay', self.stage_decay)
    if not all(isinstance(decay, (int, float)) and not isinstance(decay, bool)
               for decay in self.refine_decays):
      raise ValueError(f'refine_decays must be numbers, got '
                       f'{self.refine_decays!r}.')
    validation.check_positive('l0_lam', self.l0_lam)
    validation.check_positive('end_to_end_rate', self.end_to_end_rate)
    if self.end_to_end_max_epochs is not None:
      validation.check_int_in_range('end_to_end_max_epochs',
                                    self.end_to_end_max_epochs, 1, 2**31 - 1)
    validation.check_choice('end_to_end_restore_best',
                            self.end_to_end_restore_best, (None, False, True))
    if not 0 < self.max_support_percent <= 100:
      raise ValueError('max_support_percent must be in (0, 100], got '
                       f'{self.max_support_percent}.')
    stagewise.check_config(self.stagewise_config())

  def stagewise_config(self) -> stagewise.StagewiseConfig:
    """The phases of the learned methods' training."""
    return stagewise.StagewiseConfig(
        learning_rate=self.learning_rate,
        refine_decays=tuple(float(v) for v in self.refine_decays),
        stage_decay=self.stage_decay,
        stage_decay_target=self.stage_decay_target, adam_eps=self.adam_eps,
        steps_per_epoch=self.steps_per_epoch,
        patience=self.patience,
        min_relative_improvement=self.min_relative_improvement,
        max_epochs=self.max_epochs, compile_per_stage=self.compile_per_stage,
        new_stage_init=self.new_stage_init,
        restore_best=self.restore_best,
        relative_steps=self.relative_steps,
        phase_sigmas=(0.2, 0.05, 0.01, 0.005)[:1 + len(self.refine_decays)])


CONFIG = configs.define_config_flag(
    os.path.join(_CONFIGS, 'unrolled_benchmark_quick.py'), Settings,
    help_string='A get_config() file of the problem and the training (the '
    'fields of Settings): experiments/configs/unrolled_benchmark_quick.py '
    '(the default) or unrolled_benchmark_paper.py; override fields as '
    '--config.num_stages=8.')
flags.DEFINE_list('methods', list(CLASSICAL + LEARNED),
                  'Methods, from ' + ', '.join(METHODS) + '. <method>'
                  f'{FINE_TUNED_SUFFIX} is <method> fine-tuned end to end '
                  '(our variant; <method> runs first).')
flags.DEFINE_list('settings', [NOISELESS, '40'],
                  f'Noise settings: "{NOISELESS}" and/or SNRs in dB.')
flags.DEFINE_string('workdir', None, 'Checkpoints and finished units '
                    '(default: workdir/unrolled_benchmark_<preset>).')
flags.DEFINE_string('output_dir', None, 'Results (default: '
                    'results/unrolled_benchmark for quick, '
                    'results/unrolled_benchmark_<preset> for the others).')
flags.DEFINE_bool('report_only', False, 'Train nothing: report the finished '
                  'units of --methods and --settings in --workdir, leaving '
                  'out the others.')

FLAGS = flags.FLAGS
flags.register_validator(
    'methods', lambda methods: set(methods) <= set(METHODS),
    'Unknown method(s): choose from ' + ', '.join(METHODS) + '.')


def _is_setting(setting: str) -> bool:
  try:
    setting_snr(setting)
  except app.UsageError:
    return False
  return True


flags.register_validator(
    'settings', lambda settings: all(map(_is_setting, settings)),
    f'must each be "{NOISELESS}" or an SNR in dB.')


def setting_snr(setting: str) -> float | None:
  """None for the noiseless setting, else the SNR in dB."""
  if setting == NOISELESS:
    return None
  try:
    return float(setting)
  except ValueError:
    raise app.UsageError(f'--settings: {setting!r} is neither '
                         f'{NOISELESS!r} nor an SNR in dB.') from None


def setting_name(setting: str) -> str:
  return NOISELESS if setting == NOISELESS else f'snr_{float(setting):g}db'


def make_problem(setting: str,
                 settings: Settings) -> synthetic.SyntheticProblem:
  """The problem of a setting: the same D and keys, the setting's noise."""
  return synthetic.make_synthetic_problem(
      jax.random.key(settings.seed), signal_dim=settings.signal_dim,
      code_dim=settings.code_dim, nonzero_prob=settings.nonzero_prob,
      snr_db=setting_snr(setting), batch_size=settings.batch_size,
      num_validation=settings.num_validation, num_test=settings.num_test)


def m_schedule(settings: Settings) -> tuple[int, ...]:
  return tuple(min(k * settings.m_growth, settings.max_m)
               for k in range(1, settings.num_stages + 1))


# ------------------------------------------------------------ classical rows


def _nmse(codes, target) -> float:
  return float(metrics.nmse_db(codes, target))


def classical_row(method: str, problem: synthetic.SyntheticProblem,
                  settings: Settings) -> dict[str, Any]:
  """NMSE per iteration on the test set, lambda/M chosen on validation, and
  where the last iteration's test error comes from (`code_error_sources`)."""
  num_stages = settings.num_stages
  d = problem.dictionary
  step = lista.paper_step_size(d)
  val, test = problem.validation, problem.test

  def encoder(param):  # The methods that are untrained unrolled encoders.
    if method == 'ista':
      return models.LISTA.from_dictionary(d, lam=param, num_stages=num_stages,
                                          tied=False, step_size=step)
    if method == 'iht':
      return models.DeepL0Encoder.from_dictionary(
          d, lam=param, num_stages=num_stages, tied=False, step_size=step)
    return models.DeepMSparseEncoder.from_dictionary(
        d, m=int(param), num_stages=num_stages, tied=False, step_size=step)

  def fista(param, signals, num_iterations, tol=None):
    return solvers.fista(signals, d, param, num_iterations=num_iterations,
                         tol=tol, step_size=step).codes

  def final_codes(param, signals):
    if method == 'fista':
      return fista(param, signals, num_stages)
    if method == 'fista_converged':
      return fista(param, signals, settings.fista_max_iterations, tol=1e-7)
    unrolled = encoder(param)
    unrolled.eval()
    return unrolled(signals)

  def final_nmse(param, signals, codes):
    if method in ('fista', 'fista_converged'):  # Not the whole curve.
      return _nmse(final_codes(param, signals), codes)
    return curve(param, signals, codes)[-1]

  def curve(param, signals, codes):
    if method == 'fista':
      return [_nmse(fista(param, signals, k), codes)
              for k in range(1, num_stages + 1)]
    if method == 'fista_converged':
      return [_nmse(final_codes(param, signals), codes)] * num_stages
    return list(stagewise.stage_nmse_db(encoder(param), signals, codes))

  expected_nonzeros = problem.nonzero_prob * d.shape[1]
  grid = (tuple(sorted({min(max(1, round(f * expected_nonzeros)), d.shape[1])
                        for f in M_GRID_FACTORS}))
          if method == 'iht_m' else LAM_GRID)
  if method == 'iht':
    grid = tuple(v / 10 for v in LAM_GRID)  # l0 weights are smaller.
  if method == 'fista_converged':
    grid = FLOOR_LAM_GRID
  start = time.perf_counter()
  scores = [final_nmse(param, val.signals, val.codes) for param in grid]
  best = grid[int(np.argmin(scores))]
  return {'method': method, 'kind': 'classical',
          'parameter': ('m' if method == 'iht_m' else 'lam'),
          'value': float(best), 'validation_nmse_db': dict(
              zip([f'{v:.4g}' for v in grid], map(float, scores))),
          'test_nmse_db': [float(v) for v in curve(best, test.signals,
                                                   test.codes)],
          **code_error_sources(final_codes(best, test.signals), test.codes,
                               settings),
          'seconds': time.perf_counter() - start}


# ------------------------------------------------------------ learned rows


def build_encoder(method: str, problem: synthetic.SyntheticProblem,
                  settings: Settings, l0_lam: float):
  """Each encoder with its paper's initialization (see l0enc.lista)."""
  num_stages = settings.num_stages
  d = problem.dictionary
  step = lista.paper_step_size(d)
  if method == 'lista':
    return models.LISTA.from_dictionary(d, lam=lista.PAPER_LAM,
                                        num_stages=num_stages, tied=False,
                                        step_size=step)
  if method == 'lista_shared':
    return lista.shared_lista(d, num_stages=num_stages, step_size=step)
  if method == 'lista_cp':
    return lista.LISTACP(d, num_stages=num_stages)
  cap = settings.max_support_percent
  if method == 'lista_cpss':
    return lista.LISTACP(d, num_stages=num_stages, support_selection=True,
                         max_percent=cap)
  if method == 'lista_cpss_shared':
    return lista.LISTACP(d, num_stages=num_stages, support_selection=True,
                         max_percent=cap, tied=True)
  if method == 'alista':
    return lista.ALISTA(d, num_stages=num_stages, max_percent=cap)
  if method == 'deep_l0':
    return models.DeepL0Encoder.from_dictionary(
        d, lam=l0_lam, num_stages=num_stages, tied=False, step_size=step,
        support_selection=True, max_percent=cap)
  if method == 'deep_msparse':
    return models.DeepMSparseEncoder.from_dictionary(
        d, m=m_schedule(settings), num_stages=num_stages, tied=False,
        step_size=step)
  if method == 'alista_l0':
    return lista.ALISTA(d, num_stages=num_stages, neuron='helu', lam=l0_lam,
                        max_percent=cap)
  if method == 'alista_msparse':
    return lista.ALISTA(d, num_stages=num_stages, neuron='top_m',
                        m=m_schedule(settings))
  raise ValueError(f'unknown method {method!r}')


def analytic_l0_lam(problem: synthetic.SyntheticProblem,
                    settings: Settings) -> float:
  """The l0 weight of the best untrained ALISTA-form l0 encoder (IHT with the
  analytic weight) on the validation set, from `LAM_GRID`."""
  scores = [stagewise.stage_nmse_db(
      build_encoder('alista_l0', problem, settings, lam),
      problem.validation.signals,
      problem.validation.codes)[-1] for lam in LAM_GRID]
  return LAM_GRID[int(np.argmin(scores))]


def nonzero_bins(settings: Settings) -> tuple[tuple[int, int], ...]:
  """Ranges of a code's nonzeros (inclusive): at most the expected count, up
  to the support selection's cap (if above it), above the cap."""
  expected = int(round(settings.nonzero_prob * settings.code_dim))
  cap = int(settings.max_support_percent / 100 * settings.code_dim)
  edges = sorted({0, expected, max(cap, expected), settings.code_dim})
  return tuple((low + 1, high) for low, high in zip(edges, edges[1:]))


def code_counts(codes: jax.Array, settings: Settings) -> dict[str, Any]:
  """How many of `codes` fall in each `nonzero_bins` group, and the most
  nonzeros of one code: what a fixed validation or test set holds of the
  rare codes with more nonzeros than support selection passes."""
  nonzeros = np.count_nonzero(np.asarray(codes), axis=-1)
  return {'codes': [int(np.sum((nonzeros >= low) & (nonzeros <= high)))
                    for low, high in nonzero_bins(settings)],
          'most_nonzeros': int(nonzeros.max())}


def _without_zero_codes(codes: jax.Array, estimates: jax.Array
                        ) -> tuple[np.ndarray, np.ndarray]:
  """`codes` (N, p) and their `estimates` (..., N, p) without the all-zero
  codes, which have no relative error."""
  codes, estimates = np.asarray(codes), np.asarray(estimates)
  keep = np.any(codes != 0, axis=-1)
  return codes[keep], estimates[..., keep, :]


def code_error_sources(estimate: jax.Array, codes: jax.Array,
                       settings: Settings) -> dict[str, Any]:
  """Where the test error of codes `estimate` of `codes` comes from.

  The NMSE is a ratio of sums over the 1,000 test codes, so a few codes
  recovered badly can set it. Returns the spread of the per-code NMSE
  (`metrics.sample_nmse_db`: median, 99th percentile, worst), the share of
  the total squared error of the worst code, and the NMSE of the codes
  grouped by their number of nonzeros (`nonzero_bins`): support selection
  passes at most `max_support_percent` % of the entries unshrunk, and a
  Bernoulli code can have more nonzeros than that.
  """
  codes, estimate = _without_zero_codes(codes, estimate)
  per_code = np.asarray(metrics.sample_nmse_db(estimate, codes))
  error = np.sum((estimate - codes)**2, axis=-1)
  nonzeros = np.count_nonzero(codes, axis=-1)
  by_nonzeros = []
  for low, high in nonzero_bins(settings):
    members = (nonzeros >= low) & (nonzeros <= high)
    by_nonzeros.append({
        'nonzeros': [low, high], 'codes': int(members.sum()),
        'nmse_db': (float(10 * np.log10(error[members].sum()
                                        / np.sum(codes[members]**2)))
                    if members.any() else None)})
  worst = int(np.argmax(error))
  return {'test_code_nmse_db': {
              'median': float(np.median(per_code)),
              'p99': float(np.percentile(per_code, 99)),
              'worst': float(np.max(per_code))},
          'worst_code': {'error_share': float(error[worst] / error.sum()),
                         'nonzeros': int(nonzeros[worst])},
          'test_nmse_db_by_nonzeros': by_nonzeros}


def worst_code_stages(stage_estimates: jax.Array,
                      codes: jax.Array) -> dict[str, Any]:
  """The test code with the largest last-stage error, stage by stage.

  Args:
    stage_estimates: every stage's codes, shape `(K, N, p)`.
    codes: the true codes, shape `(N, p)`.

  Returns:
    `worst_code_nmse_db`: that code's NMSE at each stage (does it improve,
    stall or grow?); `others_nmse_db`: the NMSE (ratio of sums) of the
    other codes at each stage, the headline without that one code
    (all-zero codes left out, as in `code_error_sources`).
  """
  codes, stage_estimates = _without_zero_codes(codes, stage_estimates)
  error = np.sum((stage_estimates - codes)**2, axis=-1)  # (K, N)
  energy = np.sum(codes**2, axis=-1)
  worst = int(np.argmax(error[-1]))
  others = np.arange(codes.shape[0]) != worst
  return {'worst_code_nmse_db': [
              float(v) for v in 10 * np.log10(error[:, worst] / energy[worst])],
          'others_nmse_db': [
              float(v) for v in 10 * np.log10(
                  error[:, others].sum(axis=1) / energy[others].sum())]}


# The keys `last_stage_metrics` adds to a learned row.
LAST_STAGE_KEYS = ('test_code_nmse_db', 'worst_code',
                   'test_nmse_db_by_nonzeros', 'worst_code_stages')


def last_stage_metrics(encoder: nnx.Module,
                       problem: synthetic.SyntheticProblem,
                       settings: Settings) -> dict[str, Any]:
  """`code_error_sources` of a trained encoder's last stage on the test set,
  and `worst_code_stages`.

  (The last stage's validation NMSE is the last phase's
  `final_eval_nmse_db`.)
  """
  encoder.eval()
  stages = encoder(problem.test.signals, return_all_stages=True)
  return {**code_error_sources(stages[-1], problem.test.codes, settings),
          'worst_code_stages': worst_code_stages(stages, problem.test.codes)}


def base_method(method: str) -> str:
  """The method a fine-tuned variant starts from (itself otherwise)."""
  return method.removesuffix(FINE_TUNED_SUFFIX)


def restore_trained(encoder: nnx.Module, row: dict[str, Any], unit: str,
                    settings: Settings) -> bool:
  """Restores a finished unit's trained encoder from its last phase's
  checkpoint (kept in the workdir); False, changing nothing, without one."""
  if not row.get('phases'):
    return False
  last = row['phases'][-1]
  path = os.path.join(unit, last['name'])
  if not os.path.isdir(path):
    return False
  checkpoint.restore_model(path, stagewise.stage_model(
      encoder, last['num_stages'], settings.stagewise_config()))
  return True


def with_last_stage_metrics(row: dict[str, Any], method: str,
                            problem: synthetic.SyntheticProblem,
                            settings: Settings, unit: str) -> bool:
  """Adds `last_stage_metrics` to a unit finished before they were recorded
  (`restore_trained`); returns False, changing nothing, if it cannot."""
  if all(key in row for key in LAST_STAGE_KEYS):
    return False
  encoder = build_encoder(base_method(method), problem, settings,
                          row['init_l0_lam'])
  if not restore_trained(encoder, row, unit, settings):
    return False
  row.update(last_stage_metrics(encoder, problem, settings))
  return True


def _stream(problem: synthetic.SyntheticProblem, first_step: int = 0):
  """Fresh training batches, `first_step` on (no run sees another's)."""
  def batch_fn(step):
    batch = synthetic.synthetic_batch(problem, step + first_step)
    return batch.signals, batch.codes
  return batch_fn


def _trained_row(method: str, encoder: nnx.Module,
                 result: stagewise.StagewiseResult,
                 problem: synthetic.SyntheticProblem, settings: Settings,
                 l0_lam: float | None, before: Any, start: float,
                 training: str) -> dict[str, Any]:
  curve = stagewise.stage_nmse_db(encoder, problem.test.signals,
                                  problem.test.codes)
  return {'method': method, 'kind': 'learned', 'training': training,
          **last_stage_metrics(encoder, problem, settings),
          'init_l0_lam': l0_lam,
          'test_nmse_db': [float(v) for v in curve],
          'untrained_test_nmse_db': [float(v) for v in before],
          'steps': int(sum(p.steps for p in result.phases)),
          'train_seconds': float(sum(p.seconds for p in result.phases)),
          'wall_seconds_this_run': time.perf_counter() - start,
          'num_parameters': int(sum(np.size(v) for v in jax.tree.leaves(
              nnx.state(encoder, nnx.Param)))),
          'phases': [p._asdict() for p in result.phases]}


def learned_row(method: str, problem: synthetic.SyntheticProblem,
                settings: Settings, l0_lam: float,
                workdir: str) -> dict[str, Any]:
  if method == 'alista_l0' and settings.l0_lam is None:
    # Its steps are along the analytic W, not mu D^T: IHT's lambda does not
    # carry over, so it is chosen on validation for this iteration.
    l0_lam = analytic_l0_lam(problem, settings)
  encoder = build_encoder(method, problem, settings, l0_lam)
  before = stagewise.stage_nmse_db(encoder, problem.test.signals,
                                   problem.test.codes)
  train = (stagewise.train_stagewise if settings.training == 'stagewise'
           else stagewise.train_end_to_end)
  start = time.perf_counter()
  result = train(encoder, _stream(problem), x_eval=problem.validation.signals,
                 y_eval=problem.validation.codes,
                 config=settings.stagewise_config(),
                 workdir=workdir)
  return _trained_row(
      method, encoder, result, problem, settings,
      float(l0_lam) if method in ('deep_l0', 'alista_l0') else None, before,
      start, settings.training)


def end_to_end_config(settings: Settings) -> stagewise.StagewiseConfig:
  """The end-to-end phases of the fine-tuned variants (`fine_tuned_row`).

  The stage-wise phases' config at `settings.end_to_end_rate`, with the
  last stage-wise phase's HELU sigma throughout and at most
  `settings.end_to_end_max_epochs` validations per phase (`max_epochs` when
  None), ending at the best validation epoch where
  `settings.end_to_end_restore_best` says so (`restore_best` when None),
  in relative steps (`StagewiseConfig.relative_steps`): the
  thresholds of the last stages are a hundredth of the first's, and Adam's
  absolute steps at a rate that moves the step sizes drive them through
  zero (at SNR 40 dB such fine-tuning diverged in its first epoch).
  """
  config = settings.stagewise_config()
  return config._replace(
      learning_rate=settings.end_to_end_rate,
      phase_sigmas=(config.phase_sigmas[-1],) * len(config.phase_sigmas),
      relative_steps=True,
      max_epochs=(config.max_epochs if settings.end_to_end_max_epochs is None
                  else settings.end_to_end_max_epochs),
      restore_best=(config.restore_best
                    if settings.end_to_end_restore_best is None
                    else settings.end_to_end_restore_best))


def fine_tuned_row(method: str, problem: synthetic.SyntheticProblem,
                   settings: Settings, base_row: dict[str, Any],
                   base_unit: str, workdir: str) -> dict[str, Any]:
  """Our variant: the base method's trained encoder, then end to end.

  Stage-wise training leaves each stage's parameters where its own stage's
  loss put them (later refinements move them at decayed rates). Trained
  together on the last stage's loss, the step sizes can take a schedule no
  single stage would choose (deep-unfolded gradient descent learns
  Chebyshev-like steps: Takabe and Wadayama, 2020). The phases are
  `stagewise.end_to_end_phases` configured by `end_to_end_config`, on
  stream batches after the base's.

  Args:
    method: '<base>_e2e'.
    problem: the setting's problem.
    settings: the benchmark's settings.
    base_row: the finished row of the base method.
    base_unit: its unit directory (its last phase's checkpoint).
    workdir: this unit's directory.

  Returns:
    The row, with `base_steps` (the base's training steps) and the base's
    test curve as `untrained_test_nmse_db`.
  """
  base = base_method(method)
  encoder = build_encoder(base, problem, settings, base_row['init_l0_lam'])
  if not restore_trained(encoder, base_row, base_unit, settings):
    raise ValueError(f'{method} starts from {base}, whose last checkpoint is '
                     f'not in {base_unit}: rerun {base} there first.')
  config = end_to_end_config(settings)
  start = time.perf_counter()
  result = stagewise.train_end_to_end(
      encoder, _stream(problem, base_row['steps']),
      x_eval=problem.validation.signals, y_eval=problem.validation.codes,
      config=config, workdir=workdir)
  return {**_trained_row(method, encoder, result, problem, settings,
                         base_row['init_l0_lam'], base_row['test_nmse_db'],
                         start, f"{base_row['training']} + end to end"),
          'base_steps': base_row['steps']}


# ------------------------------------------------------------ report


def _fmt(value: float) -> str:
  return f'{value:.1f}'


def tables(results: dict[str, Any]) -> str:
  lines = []
  for setting, rows in results['settings'].items():
    lines.append(f'### {setting}\n')
    num_stages = len(next(iter(rows.values()))['test_nmse_db'])
    headers = ['method', f'NMSE (dB), stage {num_stages}', 'stage 4', 'stage 8',
               'stage 12', 'validation', 'per code: median / p99 / worst',
               'training steps', 'train s', 'choice']
    table = []
    for method, row in rows.items():
      curve = row['test_nmse_db']
      pick = lambda k: _fmt(curve[k - 1]) if len(curve) >= k else '-'
      choice = (f"{row['parameter']} = {row['value']:.4g}"
                if row['kind'] == 'classical' else row.get('training', ''))
      spread = row.get('test_code_nmse_db')
      table.append([LABELS[method], _fmt(curve[-1]), pick(4), pick(8),
                    pick(12),
                    _fmt(row['phases'][-1]['final_eval_nmse_db'])
                    if row.get('phases') else '-',
                    ' / '.join(_fmt(spread[k]) for k in ('median', 'p99',
                                                         'worst'))
                    if spread else '-', row.get('steps', '-'),
                    f"{row.get('train_seconds', row.get('seconds', 0)):.0f}",
                    choice])
    lines.append(reporting.markdown_table(headers, table))
  return '\n'.join(lines)


def error_sources(results: dict[str, Any]) -> str:
  """Per setting, each row's test error by the codes' number of nonzeros
  (`code_error_sources`; rows finished before it was recorded are left
  out)."""
  lines = []
  for setting, rows in results['settings'].items():
    rows = {m: r for m, r in rows.items() if 'test_nmse_db_by_nonzeros' in r}
    if not rows:
      continue
    bins = next(iter(rows.values()))['test_nmse_db_by_nonzeros']
    headers = (['method', 'worst code: share of the error (its nonzeros)']
               + [f"{b['nonzeros'][0]}-{b['nonzeros'][1]} nonzeros "
                  f"({b['codes']} codes)" for b in bins])
    table = [[LABELS[method],
              f"{100 * row['worst_code']['error_share']:.0f} % "
              f"({row['worst_code']['nonzeros']})"]
             + [_fmt(b['nmse_db']) if b['nmse_db'] is not None else '-'
                for b in row['test_nmse_db_by_nonzeros']]
             for method, row in rows.items()]
    lines.append(f'### {setting}\n')
    lines.append(reporting.markdown_table(headers, table))
    counts = results.get('code_counts', {}).get(setting)
    if counts:
      lines.append('Codes per group, ' + '; '.join(
          f"{split}: {' / '.join(map(str, counts[split]['codes']))} "
          f"(at most {counts[split]['most_nonzeros']} nonzeros)"
          for split in ('validation', 'test')) + '.\n')
  return '\n'.join(lines)


def reading(results: dict[str, Any]) -> str:
  """Sentences computed from the numbers: each target, met or missed."""
  rows = results['settings'].get(NOISELESS, {})
  lines = []
  targets = [(variant, target) for method, target
             in paper.UNROLLED_TARGETS_DB.items()
             for variant in (method, method + FINE_TUNED_SUFFIX)]
  for method, target in targets:
    if method not in rows:
      continue
    value = rows[method]['test_nmse_db'][-1]
    verdict = ('meets it' if value <= target
               else f'misses it by {value - target:.1f} dB')
    spread = rows[method].get('test_code_nmse_db')
    codes = (f" (per test code: median {spread['median']:.1f} dB, worst "
             f"{spread['worst']:.1f} dB)" if spread else '')
    worst = rows[method].get('worst_code')
    if worst:
      codes += (f"; its worst test code ({worst['nonzeros']} nonzeros) "
                f"carries {100 * worst['error_share']:.0f} % of the error")
    stages = rows[method].get('worst_code_stages')
    if stages:
      curve = stages['worst_code_nmse_db']
      best = int(np.argmin(curve))
      codes += (f" (its own NMSE {curve[best]:.1f} dB at its best stage, "
                f"{best + 1}, {curve[-1]:.1f} dB at the last; the other "
                f"codes {stages['others_nmse_db'][-1]:.1f} dB)")
    base = base_method(method)
    if method in FINE_TUNED and base in rows:
      codes += (f"; {rows[base]['test_nmse_db'][-1]:.1f} dB before the "
                'end-to-end phases')
    lines.append(f'- {LABELS[method]}: {value:.1f} dB at stage '
                 f'{len(rows[method]["test_nmse_db"])}{codes}, target '
                 f'{target:.0f} dB: {verdict}.')
  if 'fista_converged' in rows:
    floor = rows['fista_converged']['test_nmse_db'][-1]
    lines.append('- The l1 floor (FISTA to convergence, lambda chosen on '
                 f'validation): {floor:.1f} dB.')
  return '\n'.join(lines)


def report(results: dict[str, Any]) -> str:
  return (f"# Unrolled encoders on the 250 x 500 compressed-sensing "
          f"benchmark ({results['preset']} preset)\n\n"
          f"{results['note']}\n\n{results['environment']}\n\n"
          '## Test NMSE (1,000 fixed codes)\n\n'
          'The NMSE is a ratio of sums over the test codes, as in the '
          "papers' codes. *validation*: the last stage's NMSE on the "
          'validation codes whose plateaus ended the phases; *per code*: the '
          "spread of each test code's own NMSE, which shows when a few "
          'badly recovered codes set the headline.\n\n' + tables(results) +
          '\n## Where the error comes from (last stage, test codes)\n\n'
          'The NMSE of the test codes grouped by their number of nonzeros '
          "(the expected count, then up to support selection's cap of "
          f"{results['flags'].get('max_support_percent', 13.0):g} % of p, "
          'then above it), and the share of the total squared error of the '
          'single worst code.\n\n' + error_sources(results) +
          '\n## Against the targets (noiseless, 16 stages)\n\n'
          + reading(results) + '\n')


def _color(method: str):
  """One color per method, the same in every panel and figure."""
  return matplotlib.colormaps['tab20']((CLASSICAL + LEARNED).index(
      base_method(method)) / 20)


def _style(method: str, row: dict[str, Any]) -> str:
  """Dashed: classical; dotted: a fine-tuned variant; solid: learned."""
  if row['kind'] == 'classical':
    return '--'
  return ':' if method in FINE_TUNED else '-'


def stage_figure(results: dict[str, Any]):
  settings = list(results['settings'])
  figure = matplotlib.figure.Figure(figsize=(6 * len(settings), 4.5))
  for index, setting in enumerate(settings):
    axes = figure.add_subplot(1, len(settings), index + 1)
    for method, row in results['settings'][setting].items():
      curve = row['test_nmse_db']
      style = _style(method, row)
      if method == 'fista_converged':
        axes.axhline(curve[-1], color='gray', linestyle=':',
                     label=LABELS[method])
        continue
      axes.plot(np.arange(1, len(curve) + 1), curve, style, marker='.',
                color=_color(method), label=LABELS[method])
    axes.set_xlabel('stage (iteration) k')
    axes.set_ylabel('test NMSE (dB)')
    axes.set_title(setting)
    axes.grid(alpha=0.3)
  figure.axes[0].legend(fontsize=7)
  figure.suptitle(f"NMSE per stage, {results['preset']} preset")
  figure.tight_layout()
  return figure


def curve_figure(results: dict[str, Any]):
  settings = list(results['settings'])
  figure = matplotlib.figure.Figure(figsize=(6 * len(settings), 4.5))
  for index, setting in enumerate(settings):
    axes = figure.add_subplot(1, len(settings), index + 1)
    for method, row in results['settings'][setting].items():
      if row['kind'] != 'learned':
        continue
      steps, values = [], []
      for phase in row['phases']:
        per_epoch = (phase['steps'] / max(phase['epochs'], 1))
        for i, value in enumerate(phase['eval_nmse_db']):
          steps.append(row.get('base_steps', 0) + phase['first_step']
                       + (i + 1) * per_epoch)
          values.append(value)
      axes.plot(steps, values, _style(method, row), color=_color(method),
                label=LABELS[method], linewidth=1)
    axes.set_xlabel('training step (all phases)')
    axes.set_ylabel('validation NMSE (dB) of the stage being trained')
    axes.set_title(setting)
    axes.grid(alpha=0.3)
  if figure.axes and figure.axes[0].get_legend_handles_labels()[0]:
    figure.axes[0].legend(fontsize=7)
  figure.suptitle('Training curves (stage-wise: the stage index rises '
                  'along the curve)')
  figure.tight_layout()
  return figure


def write_outputs(results: dict[str, Any], output_dir: str) -> None:
  os.makedirs(output_dir, exist_ok=True)
  text = report(results)
  reporting.write_results(output_dir, results, text)
  reporting.write_text_atomic(os.path.join(output_dir, 'README.md'), text)
  reporting.save_figure_atomic(stage_figure(results),
                               os.path.join(output_dir, 'nmse_per_stage.png'),
                               dpi=110)
  reporting.save_figure_atomic(curve_figure(results),
                               os.path.join(output_dir,
                                            'training_curves.png'), dpi=110)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  python_logging.getLogger('jax').setLevel(python_logging.WARNING)
  settings = configs.to_settings(Settings, CONFIG.value)
  config = settings.stagewise_config()
  workdir = FLAGS.workdir or os.path.join(
      'workdir', f'unrolled_benchmark_{settings.preset}')
  output_dir = FLAGS.output_dir or (
      'results/unrolled_benchmark' if settings.preset == 'quick' else
      f'results/unrolled_benchmark_{settings.preset}')
  results = {
      'preset': settings.preset,
      'note': settings.note,
      'environment': (f'Ran on {platform.node() or "?"}: '
                      f'{jax.devices()[0].device_kind} '
                      f'({jax.default_backend()}), jax {jax.__version__}.'),
      # The key and the fields of earlier results files.
      'flags': {name: getattr(settings, name) for name in (
          'num_stages', 'signal_dim', 'code_dim', 'nonzero_prob', 'num_test',
          'batch_size', 'training', 'learning_rate', 'stage_decay', 'seed',
          'max_m', 'm_growth', 'l0_lam', 'max_support_percent',
          'end_to_end_rate', 'end_to_end_max_epochs',
          'end_to_end_restore_best', 'new_stage_init',
          'restore_best', 'relative_steps', 'stage_decay_target',
          'adam_eps')},
      'config': {k: list(v) if isinstance(v, tuple) else v
                 for k, v in config._asdict().items()},
      'num_validation': settings.num_validation,
      'code_counts': {},
      'settings': {}}
  # A fine-tuned variant starts from its base method's unit: it runs first.
  requested = set(FLAGS.methods) | set(map(base_method, FLAGS.methods))
  # IHT's lambda initializes the Deep l0 thresholds: it runs first.
  if settings.l0_lam is None and requested & {'deep_l0', 'alista_l0'}:
    requested.add('iht')
  methods = [m for m in METHODS if m in requested]
  for setting in FLAGS.settings:
    name = setting_name(setting)
    problem = make_problem(setting, settings)
    results['code_counts'][name] = {
        split: code_counts(getattr(problem, split).codes, settings)
        for split in ('validation', 'test')}
    rows = results['settings'].setdefault(name, {})
    for method in methods:
      unit = os.path.join(workdir, name, method)
      done = os.path.join(unit, 'result.json')
      if os.path.exists(done):
        rows[method] = reporting.read_json(done)
        if method not in CLASSICAL and with_last_stage_metrics(
            rows[method], method, problem, settings, unit):
          reporting.write_json_atomic(done, rows[method])
        logging.info('%s / %s: read back (%.1f dB).', name, method,
                     rows[method]['test_nmse_db'][-1])
        continue
      if FLAGS.report_only:
        logging.info('%s / %s: not finished, left out.', name, method)
        continue
      logging.info('%s / %s: starting.', name, method)
      if method in CLASSICAL:
        row = classical_row(method, problem, settings)
      elif method in FINE_TUNED:
        base = base_method(method)
        row = fine_tuned_row(method, problem, settings, rows[base],
                             os.path.join(workdir, name, base), unit)
      else:
        # Set whenever an l0 method runs (IHT is then added above).
        l0_lam = (settings.l0_lam if settings.l0_lam is not None
                  else rows.get('iht', {}).get('value'))
        row = learned_row(method, problem, settings, l0_lam, unit)
      reporting.write_json_atomic(done, row)
      rows[method] = row
      logging.info('%s / %s: %.1f dB at stage %d.', name, method,
                   row['test_nmse_db'][-1], settings.num_stages)
      write_outputs(results, output_dir)
    if not rows:  # Only with --report_only.
      del results['settings'][name]
      del results['code_counts'][name]
  if not results['settings']:
    raise ValueError(f'{workdir} holds no finished unit of --methods and '
                     '--settings to report.')
  write_outputs(results, output_dir)
  print(report(results))


if __name__ == '__main__':
  app.run(main)
