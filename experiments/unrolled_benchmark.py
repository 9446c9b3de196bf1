r"""The standard unrolled-encoder benchmark: NMSE per stage on 250 x 500 CS.

The problem of the LISTA-CPSS and ALISTA papers, generated from --seed (our
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
  learned    LISTA (Gregor and LeCun), LISTA-CP and LISTA-CPSS (Chen et al.
             2018), ALISTA (Liu et al. 2019), our Deep l0 encoder (untied,
             with support selection) and Deep M-sparse encoder (untied, M
             per stage), and the two in the ALISTA form (analytic W, only
             per-stage step sizes and thresholds learned):
             `l0enc.lista.ALISTA(neuron='helu' | 'top_m')`.

Learned methods are trained stage-wise (`l0enc.stagewise`, the papers'
recipe) or end to end (--training). Each (setting, method) is a resumable
unit in <workdir>/<setting>/<method>/: kill the run and start the same
command again, finished units are read back and the interrupted one resumes.

    python experiments/unrolled_benchmark.py                 # quick preset
    python experiments/unrolled_benchmark.py --preset=paper  # one GPU
    python experiments/unrolled_benchmark.py --methods=alista --settings=0

Presets:
  quick  two shared CPU cores, about 40 minutes (noiseless first): short
         phases (a validation every 25 steps, a plateau after one without
         improvement, at most 3 per phase), one refinement rate (x0.2)
         instead of two, 250 validation signals: 50-75 steps per phase,
         about 2,000 per method. Far from converged: the papers train each
         phase until 4,000 steps pass without improvement.
  paper  one GPU, meant for about 10 minutes (an estimate: it has not run
         on a GPU yet): the papers' phases (x0.2 and x0.02), a validation
         every 50 steps, a plateau after two without improvement, at most
         10 per phase.
Every flag below overrides its preset value.

Writes results.json, results.md, README.md (the tables and their reading),
nmse_per_stage.png and training_curves.png to --output_dir.
"""

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

from l0enc import lista
from l0enc import metrics
from l0enc import models
from l0enc import reporting
from l0enc import solvers
from l0enc import stagewise
from l0enc import synthetic
from l0enc import validation

NOISELESS = 'noiseless'
CLASSICAL = ('ista', 'fista', 'iht', 'iht_m', 'fista_converged')
LEARNED = ('lista', 'lista_cp', 'lista_cpss', 'alista', 'deep_l0',
           'deep_msparse', 'alista_l0', 'alista_msparse')
LABELS = {
    'ista': 'ISTA', 'fista': 'FISTA', 'iht': 'IHT, problem (1)',
    'iht_m': 'IHT, problem (2)', 'fista_converged': 'FISTA, converged',
    'lista': 'LISTA', 'lista_cp': 'LISTA-CP', 'lista_cpss': 'LISTA-CPSS',
    'alista': 'ALISTA', 'deep_l0': 'Deep l0 (SS)',
    'deep_msparse': 'Deep M-sparse (M per stage)',
    'alista_l0': 'Deep l0, ALISTA form (SS)',
    'alista_msparse': 'Deep M-sparse, ALISTA form',
}
# The issue's targets at 16 stages, noiseless (read off the papers' plots).
TARGETS_DB = {'lista': -35.0, 'lista_cpss': -60.0, 'alista': -70.0,
              'deep_l0': -60.0, 'deep_msparse': -60.0, 'alista_l0': -60.0,
              'alista_msparse': -60.0}
LAM_GRID = tuple(float(v) for v in np.geomspace(1e-3, 1.0, 13))
# M of problem (2), as multiples of the expected number of nonzeros (50).
M_GRID_FACTORS = (0.8, 1.0, 1.2, 1.5, 2.0)

PRESETS = {
    'quick': dict(steps_per_epoch=25, patience=1, max_epochs=3,
                  refine_decays=(0.2,), num_validation=250,
                  note=('Quick preset (two CPU cores): short phases and one '
                        'refinement rate; far from the papers\' budget '
                        '(phases end after 4,000 steps without '
                        'improvement), so not converged.')),
    'paper': dict(steps_per_epoch=50, patience=2, max_epochs=10,
                  refine_decays=(0.2, 0.02), num_validation=1000,
                  note=("Paper preset: the papers' phases (x0.2, x0.02) "
                        'with shorter plateaus, for one GPU.')),
}

flags.DEFINE_enum('preset', 'quick', list(PRESETS),
                  'Defaults for the flags below: "quick" for two CPU cores '
                  '(about half an hour), "paper" for one GPU (about 10 '
                  'minutes).')
flags.DEFINE_list('methods', list(CLASSICAL + LEARNED),
                  'Methods, from ' + ', '.join(CLASSICAL + LEARNED) + '.')
flags.DEFINE_list('settings', [NOISELESS, '40'],
                  f'Noise settings: "{NOISELESS}" and/or SNRs in dB.')
flags.DEFINE_integer('num_stages', 16, 'Stages (iterations) of every method.', lower_bound=1)
flags.DEFINE_integer('signal_dim', synthetic.STANDARD_SIGNAL_DIM, 'n.',
                     lower_bound=1)
flags.DEFINE_integer('code_dim', synthetic.STANDARD_CODE_DIM, 'p.',
                     lower_bound=1)
flags.DEFINE_float('nonzero_prob', synthetic.STANDARD_NONZERO_PROB,
                   'Probability that a code entry is nonzero.')
flags.DEFINE_integer('num_test', 1000, 'Fixed test codes.', lower_bound=1)
flags.DEFINE_integer('num_validation', None, "Fixed validation codes "
                     "(default: the preset's).", lower_bound=1)
flags.DEFINE_integer('batch_size', 64, 'Training batch (the papers\' 64).', lower_bound=1)
flags.DEFINE_enum('training', 'stagewise', ['stagewise', 'end_to_end'],
                  'Stage-wise (the papers\' recipe) or end-to-end training.')
flags.DEFINE_float('learning_rate', 5e-4, 'Base Adam rate (the papers\').')
flags.DEFINE_list('refine_decays', None, "Refinement rates as multiples of "
                  "the base rate (default: the preset's).")
flags.DEFINE_float('stage_decay', 0.3, 'Rates of earlier stages are '
                   'multiplied by this after each stage (the papers\' 0.3).')
flags.DEFINE_integer('steps_per_epoch', None, "Steps between validations "
                     "(default: the preset's).", lower_bound=1)
flags.DEFINE_integer('patience', None, "Validations without improvement "
                     "that end a phase (default: the preset's).", lower_bound=1)
flags.DEFINE_integer('max_epochs', None, "Most validations per phase "
                     "(default: the preset's).", lower_bound=1)
flags.DEFINE_float('l0_lam', None, 'l0 weight that initializes the Deep l0 '
                   'thresholds; default: the one IHT chose on validation '
                   '(for deep_l0), the best on validation of the untrained '
                   'encoder (for alista_l0).')
flags.DEFINE_integer('max_m', 100, 'Largest M of the M-sparse encoders '
                     '(M per stage grows to it).', lower_bound=1)
flags.DEFINE_integer('m_growth', 12, 'M of stage k: min(k * m_growth, '
                     'max_m).', lower_bound=1)
flags.DEFINE_integer('fista_max_iterations', 3000, 'Cap of converged FISTA.', lower_bound=1)
flags.DEFINE_integer('seed', 0, 'Seed of the matrix, stream and sets.')
flags.DEFINE_string('note', '', 'A sentence added to the report\'s note, '
                    'e.g. what this run changed from its preset.')
flags.DEFINE_string('workdir', None, 'Checkpoints and finished units '
                    '(default: workdir/unrolled_benchmark_<preset>).')
flags.DEFINE_string('output_dir', None, 'Results (default: '
                    'results/unrolled_benchmark for quick, '
                    'results/unrolled_benchmark_paper for paper).')

FLAGS = flags.FLAGS
validation.register_flag_checks(
    positive=('learning_rate', 'l0_lam', 'refine_decays'),
    fraction=('nonzero_prob', 'stage_decay'))
flags.register_validator(
    'methods', lambda methods: set(methods) <= set(CLASSICAL + LEARNED),
    'must name methods from ' + ', '.join(CLASSICAL + LEARNED) + '.')


def _is_setting(setting: str) -> bool:
  try:
    setting_snr(setting)
  except app.UsageError:
    return False
  return True


flags.register_validator(
    'settings', lambda settings: all(map(_is_setting, settings)),
    f'must each be "{NOISELESS}" or an SNR in dB.')


def _pick(name: str) -> Any:
  value = getattr(FLAGS, name)
  return PRESETS[FLAGS.preset][name] if value is None else value


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
                 num_validation: int) -> synthetic.SyntheticProblem:
  """The problem of a setting: the same D and keys, the setting's noise."""
  return synthetic.make_synthetic_problem(
      jax.random.key(FLAGS.seed), signal_dim=FLAGS.signal_dim,
      code_dim=FLAGS.code_dim, nonzero_prob=FLAGS.nonzero_prob,
      snr_db=setting_snr(setting), batch_size=FLAGS.batch_size,
      num_validation=num_validation, num_test=FLAGS.num_test)


def m_schedule(num_stages: int) -> tuple[int, ...]:
  return tuple(min(k * FLAGS.m_growth, FLAGS.max_m)
               for k in range(1, num_stages + 1))


# ------------------------------------------------------------ classical rows


def _nmse(codes, target) -> float:
  return float(metrics.nmse_db(codes, target))


def _iterations_nmse(run, x, target, num_stages) -> list[float]:
  """NMSE after each of 1..K iterations of a Markov iteration `run`."""
  codes, curve = None, []
  for _ in range(num_stages):
    codes = run(x, codes)
    curve.append(_nmse(codes, target))
  return curve


def classical_row(method: str, problem: synthetic.SyntheticProblem,
                  num_stages: int) -> dict[str, Any]:
  """NMSE per iteration on the test set, lambda/M chosen on validation."""
  d = problem.dictionary
  step = lista.paper_step_size(d)
  val, test = problem.validation, problem.test

  def final_nmse(param, signals, codes):
    if method == 'fista':  # K iterations only, not the whole curve.
      return _nmse(solvers.fista(signals, d, param, num_iterations=num_stages,
                                 step_size=step).codes, codes)
    return curves(param, signals, codes)[-1]

  def curves(param, signals, codes):
    if method == 'ista':
      return list(stagewise.stage_nmse_db(models.LISTA.from_dictionary(
          d, lam=param, num_stages=num_stages, tied=False, step_size=step),
          signals, codes))
    if method == 'iht':
      encoder = models.DeepL0Encoder.from_dictionary(
          d, lam=param, num_stages=num_stages, tied=False, step_size=step)
      return list(stagewise.stage_nmse_db(encoder, signals, codes))
    if method == 'iht_m':
      return list(stagewise.stage_nmse_db(models.DeepMSparseEncoder
                                          .from_dictionary(
                                              d, m=int(param),
                                              num_stages=num_stages,
                                              tied=False, step_size=step),
                                          signals, codes))
    if method == 'fista':
      return [_nmse(solvers.fista(signals, d, param, num_iterations=k,
                                  step_size=step).codes, codes)
              for k in range(1, num_stages + 1)]
    result = solvers.fista(signals, d, param, tol=1e-7,
                           num_iterations=FLAGS.fista_max_iterations,
                           step_size=step)
    return [_nmse(result.codes, codes)] * num_stages

  expected_nonzeros = problem.nonzero_prob * d.shape[1]
  grid = (tuple(sorted({min(max(1, round(f * expected_nonzeros)), d.shape[1])
                        for f in M_GRID_FACTORS}))
          if method == 'iht_m' else LAM_GRID)
  if method == 'iht':
    grid = tuple(v / 10 for v in LAM_GRID)  # l0 weights are smaller.
  start = time.perf_counter()
  scores = [final_nmse(param, val.signals, val.codes) for param in grid]
  best = grid[int(np.argmin(scores))]
  curve = curves(best, test.signals, test.codes)
  return {'method': method, 'kind': 'classical',
          'parameter': ('m' if method == 'iht_m' else 'lam'),
          'value': float(best), 'validation_nmse_db': dict(
              zip([f'{v:.4g}' for v in grid], map(float, scores))),
          'test_nmse_db': [float(v) for v in curve],
          'seconds': time.perf_counter() - start}


# ------------------------------------------------------------ learned rows


def build_encoder(method: str, problem: synthetic.SyntheticProblem,
                  num_stages: int, l0_lam: float):
  """Each encoder with its paper's initialization (see l0enc.lista)."""
  d = problem.dictionary
  step = lista.paper_step_size(d)
  if method == 'lista':
    return models.LISTA.from_dictionary(d, lam=lista.PAPER_LAM,
                                        num_stages=num_stages, tied=False,
                                        step_size=step)
  if method == 'lista_cp':
    return lista.LISTACP(d, num_stages=num_stages)
  if method == 'lista_cpss':
    return lista.LISTACP(d, num_stages=num_stages, support_selection=True)
  if method == 'alista':
    return lista.ALISTA(d, num_stages=num_stages)
  if method == 'deep_l0':
    return models.DeepL0Encoder.from_dictionary(
        d, lam=l0_lam, num_stages=num_stages, tied=False, step_size=step,
        support_selection=True)
  if method == 'deep_msparse':
    return models.DeepMSparseEncoder.from_dictionary(
        d, m=m_schedule(num_stages), num_stages=num_stages, tied=False,
        step_size=step)
  if method == 'alista_l0':
    return lista.ALISTA(d, num_stages=num_stages, neuron='helu', lam=l0_lam)
  if method == 'alista_msparse':
    return lista.ALISTA(d, num_stages=num_stages, neuron='top_m',
                        m=m_schedule(num_stages))
  raise ValueError(f'unknown method {method!r}')


def analytic_l0_lam(problem: synthetic.SyntheticProblem,
                    num_stages: int) -> float:
  """The l0 weight of the best untrained ALISTA-form l0 encoder (IHT with the
  analytic weight) on the validation set, from `LAM_GRID`."""
  scores = [stagewise.stage_nmse_db(
      lista.ALISTA(problem.dictionary, num_stages=num_stages, neuron='helu',
                   lam=lam), problem.validation.signals,
      problem.validation.codes)[-1] for lam in LAM_GRID]
  return LAM_GRID[int(np.argmin(scores))]


def learned_row(method: str, problem: synthetic.SyntheticProblem,
                num_stages: int, config: stagewise.StagewiseConfig,
                l0_lam: float,
                workdir: str) -> dict[str, Any]:
  if method == 'alista_l0' and FLAGS.l0_lam is None:
    # Its steps are along the analytic W, not mu D^T: IHT's lambda does not
    # carry over, so it is chosen on validation for this iteration.
    l0_lam = analytic_l0_lam(problem, num_stages)
  encoder = build_encoder(method, problem, num_stages, l0_lam)
  before = stagewise.stage_nmse_db(encoder, problem.test.signals,
                                   problem.test.codes)

  def batch_fn(step):
    batch = synthetic.synthetic_batch(problem, step)
    return batch.signals, batch.codes

  train = (stagewise.train_stagewise if FLAGS.training == 'stagewise'
           else stagewise.train_end_to_end)
  start = time.perf_counter()
  result = train(encoder, batch_fn, x_eval=problem.validation.signals,
                 y_eval=problem.validation.codes, config=config,
                 workdir=workdir)
  curve = stagewise.stage_nmse_db(encoder, problem.test.signals,
                                  problem.test.codes)
  return {'method': method, 'kind': 'learned', 'training': FLAGS.training,
          'init_l0_lam': (float(l0_lam) if method in ('deep_l0', 'alista_l0')
                          else None),
          'test_nmse_db': [float(v) for v in curve],
          'untrained_test_nmse_db': [float(v) for v in before],
          'steps': int(sum(p.steps for p in result.phases)),
          'train_seconds': float(sum(p.seconds for p in result.phases)),
          'wall_seconds_this_run': time.perf_counter() - start,
          'num_parameters': int(sum(np.size(v) for v in jax.tree.leaves(
              nnx.state(encoder, nnx.Param)))),
          'phases': [p._asdict() for p in result.phases]}


# ------------------------------------------------------------ report


def _fmt(value: float) -> str:
  return f'{value:.1f}'


def tables(results: dict[str, Any]) -> str:
  lines = []
  for setting, rows in results['settings'].items():
    lines.append(f'### {setting}\n')
    num_stages = len(next(iter(rows.values()))['test_nmse_db'])
    headers = ['method', f'NMSE (dB), stage {num_stages}', 'stage 4', 'stage 8',
               'stage 12', 'training steps', 'train s', 'choice']
    table = []
    for method, row in rows.items():
      curve = row['test_nmse_db']
      pick = lambda k: _fmt(curve[k - 1]) if len(curve) >= k else '-'
      choice = (f"{row['parameter']} = {row['value']:.4g}"
                if row['kind'] == 'classical' else row.get('training', ''))
      table.append([LABELS[method], _fmt(curve[-1]), pick(4), pick(8),
                    pick(12), row.get('steps', '-'),
                    f"{row.get('train_seconds', row.get('seconds', 0)):.0f}",
                    choice])
    lines.append(reporting.markdown_table(headers, table))
  return '\n'.join(lines)


def reading(results: dict[str, Any]) -> str:
  """Sentences computed from the numbers: each target, met or missed."""
  rows = results['settings'].get(NOISELESS, {})
  lines = []
  for method, target in TARGETS_DB.items():
    if method not in rows:
      continue
    value = rows[method]['test_nmse_db'][-1]
    verdict = ('meets it' if value <= target
               else f'misses it by {value - target:.1f} dB')
    lines.append(f'- {LABELS[method]}: {value:.1f} dB at stage '
                 f'{len(rows[method]["test_nmse_db"])}, target {target:.0f} '
                 f'dB: {verdict}.')
  if 'fista_converged' in rows:
    floor = rows['fista_converged']['test_nmse_db'][-1]
    lines.append('- The l1 floor (FISTA to convergence, lambda chosen on '
                 f'validation): {floor:.1f} dB.')
  return '\n'.join(lines)


def report(results: dict[str, Any]) -> str:
  return (f"# Unrolled encoders on the 250 x 500 compressed-sensing "
          f"benchmark ({results['preset']} preset)\n\n"
          f"{results['note']}\n\n{results['environment']}\n\n"
          '## Test NMSE (1,000 fixed codes)\n\n' + tables(results) +
          '\n## Against the targets (noiseless, 16 stages)\n\n'
          + reading(results) + '\n')


def _color(method: str):
  """One color per method, the same in every panel and figure."""
  return matplotlib.colormaps['tab20']((CLASSICAL + LEARNED).index(method)
                                       / 20)


def stage_figure(results: dict[str, Any]):
  settings = list(results['settings'])
  figure = matplotlib.figure.Figure(figsize=(6 * len(settings), 4.5))
  for index, setting in enumerate(settings):
    axes = figure.add_subplot(1, len(settings), index + 1)
    for method, row in results['settings'][setting].items():
      curve = row['test_nmse_db']
      style = '--' if row['kind'] == 'classical' else '-'
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
          steps.append(phase['first_step'] + (i + 1) * per_epoch)
          values.append(value)
      axes.plot(steps, values, color=_color(method), label=LABELS[method],
                linewidth=1)
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
  reporting.write_json_atomic(os.path.join(output_dir, 'results.json'),
                              results)
  text = report(results)
  reporting.write_text_atomic(os.path.join(output_dir, 'results.md'), text)
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
  unknown = [m for m in FLAGS.methods if m not in CLASSICAL + LEARNED]
  if unknown:
    raise app.UsageError(f'Unknown method(s) {unknown}; choose from '
                         f'{list(CLASSICAL + LEARNED)}.')
  for setting in FLAGS.settings:
    setting_snr(setting)
  refine = _pick('refine_decays')
  config = stagewise.StagewiseConfig(
      learning_rate=FLAGS.learning_rate,
      refine_decays=tuple(float(v) for v in refine),
      stage_decay=FLAGS.stage_decay,
      steps_per_epoch=_pick('steps_per_epoch'), patience=_pick('patience'),
      max_epochs=_pick('max_epochs'),
      phase_sigmas=(0.2, 0.05, 0.01, 0.005)[:1 + len(refine)])
  stagewise.check_config(config)
  workdir = FLAGS.workdir or os.path.join(
      'workdir', f'unrolled_benchmark_{FLAGS.preset}')
  output_dir = FLAGS.output_dir or ('results/unrolled_benchmark'
                                    if FLAGS.preset == 'quick' else
                                    'results/unrolled_benchmark_paper')
  results = {
      'preset': FLAGS.preset,
      'note': ' '.join(filter(None, (PRESETS[FLAGS.preset]['note'],
                                     FLAGS.note))),
      'environment': (f'Ran on {platform.node() or "?"}: '
                      f'{jax.devices()[0].device_kind} '
                      f'({jax.default_backend()}), jax {jax.__version__}.'),
      'flags': {name: FLAGS[name].value for name in (
          'num_stages', 'signal_dim', 'code_dim', 'nonzero_prob', 'num_test',
          'batch_size', 'training', 'learning_rate', 'stage_decay', 'seed',
          'max_m', 'm_growth', 'l0_lam')},
      'config': {k: list(v) if isinstance(v, tuple) else v
                 for k, v in config._asdict().items()},
      'num_validation': _pick('num_validation'),
      'settings': {}}
  methods = ([m for m in CLASSICAL if m in FLAGS.methods]
             + [m for m in LEARNED if m in FLAGS.methods])
  # IHT's lambda initializes the Deep l0 thresholds: it runs first.
  if FLAGS.l0_lam is None and any(m in FLAGS.methods for m in (
      'deep_l0', 'alista_l0')) and 'iht' not in methods:
    methods.insert(0, 'iht')
  for setting in FLAGS.settings:
    name = setting_name(setting)
    problem = make_problem(setting, _pick('num_validation'))
    rows = results['settings'].setdefault(name, {})
    for method in methods:
      unit = os.path.join(workdir, name, method)
      done = os.path.join(unit, 'result.json')
      if os.path.exists(done):
        rows[method] = reporting.read_json(done)
        logging.info('%s / %s: read back (%.1f dB).', name, method,
                     rows[method]['test_nmse_db'][-1])
        continue
      logging.info('%s / %s: starting.', name, method)
      if method in CLASSICAL:
        row = classical_row(method, problem, FLAGS.num_stages)
      else:
        # Set whenever an l0 method runs (IHT is then added above).
        l0_lam = (FLAGS.l0_lam if FLAGS.l0_lam is not None
                  else rows.get('iht', {}).get('value'))
        row = learned_row(method, problem, FLAGS.num_stages, config, l0_lam,
                          unit)
      reporting.write_json_atomic(done, row)
      rows[method] = row
      logging.info('%s / %s: %.1f dB at stage %d.', name, method,
                   row['test_nmse_db'][-1], FLAGS.num_stages)
      write_outputs(results, output_dir)
  write_outputs(results, output_dir)
  print(report(results))


if __name__ == '__main__':
  app.run(main)
