r"""Batched l0enc solvers against scikit-learn's `sparse_encode`, same problem.

Both sides code the same signals over the same unit-norm random dictionary:

* the l1 problem (3), `1/2 ||x - D a||^2 + lam ||a||_1`: our FISTA against
  'lasso_lars' and 'lasso_cd' (scikit-learn scales its alpha so that it
  solves this same objective);
* the M-sparse problem (2), `||x - D a||^2` s.t. `||a||_0 <= M`: our batched
  OMP and IHT against 'omp'.

"Matched quality": FISTA runs on a ladder of tolerances, and the loosest one
whose mean objective is within `match_rtol` of the best scikit-learn
objective is the one timed. OMP is the same greedy algorithm on both sides.
IHT (100 iterations from zero) reaches a different local minimum of (2); its
row is there for its speed and quality, not as a matched comparison.

    python experiments/solvers_benchmark.py                  # the default
    python experiments/solvers_benchmark.py --config.num_signals=1000 \
        --workdir=/tmp/b

The settings are a `get_config()` file (`--config`, by default
`experiments/configs/solvers_benchmark_default.py`); any field can be
overridden as `--config.<field>=<value>`.

Writes `results.json`, `results.md` and `time_vs_objective.png` to --workdir.
"""

import dataclasses
import logging as python_logging
import os
import platform
import time
import warnings
from typing import Any

from absl import app
from absl import flags
from absl import logging
import jax
import matplotlib.figure
import numpy as np
from sklearn import decomposition
from sklearn import exceptions

from l0enc import adaptive_solvers
from l0enc import reporting
from l0enc import solvers
from l0enc import synthetic
from l0enc import validation
from l0enc.experiments import configs


@dataclasses.dataclass(frozen=True)
class Settings:
  """The problem and the timing of the benchmark: the fields of `--config`.

  Attributes:
    num_signals: signals to code.
    signal_dim: n.
    code_dim: p, the number of atoms.
    nonzero_prob: probability that an entry of the generating codes is
      nonzero (the signals are `D a + noise`).
    snr_db: signal-to-noise ratio of the signals.
    lam: l1 weight of problem (3).
    m: sparsity M of problem (2), at most `min(signal_dim, code_dim)` (OMP).
    match_rtol: FISTA counts as matched when its mean objective is at most
      `(1 + match_rtol)` times the best scikit-learn one.
    repeats: timed repetitions of the l0enc solvers, after a warm-up (the
      median is kept); scikit-learn runs once.
    seed: PRNG seed of the dictionary and the signals.
  """
  num_signals: int
  signal_dim: int
  code_dim: int
  nonzero_prob: float
  snr_db: float
  lam: float
  m: int
  match_rtol: float
  repeats: int
  seed: int

  def __post_init__(self):
    for name in ('num_signals', 'signal_dim', 'code_dim', 'repeats'):
      validation.check_int_in_range(name, getattr(self, name), 1, 2**31 - 1)
    validation.check_int_in_range('seed', self.seed, 0, 2**31 - 1)
    validation.check_int_in_range(
        'm (at most min(signal_dim, code_dim), for OMP)', self.m, 1,
        min(self.signal_dim, self.code_dim))
    validation.check_fraction('nonzero_prob', self.nonzero_prob)
    validation.check_finite('snr_db', self.snr_db)
    validation.check_positive('lam', self.lam)
    validation.check_nonnegative('match_rtol', self.match_rtol)


CONFIG = configs.define_config_flag(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs',
                 'solvers_benchmark_default.py'), Settings,
    help_string='A get_config() file of the problem and the timing (the '
    'fields of Settings); override fields as --config.num_signals=1000.')
flags.DEFINE_string('workdir', 'workdir/solvers_benchmark',
                    'Directory for results.json, results.md and the plot.')

FLAGS = flags.FLAGS

# FISTA relative-change tolerances tried, loosest first.
TOLERANCE_LADDER = (3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5)
MAX_ITERATIONS = 20_000
IHT_ITERATIONS = 100


def _mean_objective(problem: str, x: np.ndarray, dictionary: np.ndarray,
                    codes: np.ndarray, lam: float) -> float:
  """Mean objective in float64, computed the same way for every method."""
  codes = np.asarray(codes, np.float64)
  residual = np.sum((x - codes @ dictionary.T)**2, axis=1)
  if problem == 'l1':
    return float(np.mean(0.5 * residual + lam * np.abs(codes).sum(1)))
  return float(np.mean(residual))


def run_benchmark(*, num_signals: int, signal_dim: int, code_dim: int,
                  nonzero_prob: float, snr_db: float, lam: float, m: int,
                  match_rtol: float, repeats: int, seed: int) -> dict[str, Any]:
  """Runs every method on one problem instance and returns the results."""
  problem = synthetic.make_synthetic(
      jax.random.PRNGKey(seed), num_signals, signal_dim=signal_dim,
      code_dim=code_dim, nonzero_prob=nonzero_prob, snr_db=snr_db)
  x, dictionary = problem.signals, problem.dictionary
  x64 = np.asarray(x, np.float64)
  dictionary64 = np.asarray(dictionary, np.float64)
  # scikit-learn gets the same float32 arrays, its dictionary as (p, n) rows.
  x_host, atoms_host = np.asarray(x), np.asarray(dictionary).T.copy()
  rows = []

  def record(problem_name, method, seconds, codes, **extra):
    row = dict(problem=problem_name, method=method, seconds=seconds,
               objective=_mean_objective(problem_name, x64, dictionary64,
                                         codes, lam),
               mean_nonzeros=float(np.mean(np.count_nonzero(codes, axis=1))),
               **extra)
    logging.info('%-3s %-32s %8.3f s  objective %.7g', problem_name, method,
                 seconds, row['objective'])
    rows.append(row)
    return row

  def sklearn_encode(algorithm, **kwargs):
    # Timed once: these runs take seconds, and scikit-learn has no warm-up.
    start = time.perf_counter()
    with warnings.catch_warnings():
      # lasso_cd warns when its default duality-gap tolerance is not met; we
      # compare objectives directly instead.
      warnings.simplefilter('ignore', exceptions.ConvergenceWarning)
      codes = decomposition.sparse_encode(x_host, atoms_host,
                                          algorithm=algorithm, **kwargs)
    return codes, time.perf_counter() - start

  # The l1 problem (3).
  for algorithm in ('lasso_lars', 'lasso_cd'):
    codes, seconds = sklearn_encode(algorithm, alpha=lam)
    record('l1', f'scikit-learn {algorithm}', seconds, codes)
  target = min(row['objective'] for row in rows) * (1 + match_rtol)
  ladder = []
  for tol in TOLERANCE_LADDER:
    fista = lambda tol=tol: solvers.fista(x, dictionary, lam, tol=tol,
                                          num_iterations=MAX_ITERATIONS)
    result = fista()
    objective = _mean_objective('l1', x64, dictionary64,
                                np.asarray(result.codes), lam)
    ladder.append(dict(tol=tol, objective=objective,
                       iterations=int(result.num_iterations.max()),
                       seconds=reporting.time_call(fista, repeats=repeats)))
    if objective <= target:
      break
  matched = ladder[-1]
  record('l1', f"l0enc fista (tol={matched['tol']:g})", matched['seconds'],
         np.asarray(result.codes), iterations=matched['iterations'],
         matched=matched['objective'] <= target)

  # The M-sparse problem (2).
  codes, seconds = sklearn_encode('omp', n_nonzero_coefs=m)
  record('m', 'scikit-learn omp', seconds, codes)
  omp = lambda: adaptive_solvers.omp(x, dictionary, m)
  record('m', 'l0enc omp', reporting.time_call(omp, repeats=repeats),
         np.asarray(omp().codes), matched=True)
  iht = lambda: solvers.iht(x, dictionary, m=m, num_iterations=IHT_ITERATIONS)
  result = iht()  # Compiles; IHT's top-m runs on one CPU core, so time once.
  record('m', f'l0enc iht ({IHT_ITERATIONS} iterations from zero)',
         reporting.time_call(iht, warmup=0, repeats=1),
         np.asarray(result.codes), iterations=IHT_ITERATIONS, matched=False)

  for row in rows:
    if row['method'].startswith('l0enc'):
      references = [r for r in rows if r['problem'] == row['problem'] and
                    r['method'].startswith('scikit-learn')]
      row['speedup'] = {r['method']: r['seconds'] / row['seconds']
                        for r in references}
  device = jax.devices()[0]
  return dict(
      config=dict(num_signals=num_signals, signal_dim=signal_dim,
                  code_dim=code_dim, nonzero_prob=nonzero_prob,
                  snr_db=snr_db, lam=lam, m=m, match_rtol=match_rtol,
                  repeats=repeats, seed=seed),
      environment=dict(jax_backend=jax.default_backend(),
                       device=device.device_kind, cpu_count=os.cpu_count(),
                       machine=platform.machine(), jax=jax.__version__),
      rows=rows, fista_ladder=ladder)


def markdown(results: dict[str, Any]) -> str:
  """The results as a Markdown table, with the setting in a caption."""
  config, environment = results['config'], results['environment']
  table_rows = []
  for row in results['rows']:
    speedup = row.get('speedup')
    table_rows.append([
        {'l1': '(3) l1', 'm': '(2) M-sparse'}[row['problem']], row['method'],
        f"{row['seconds']:.3f}", f"{row['objective']:.6f}",
        f"{row['mean_nonzeros']:.1f}",
        ', '.join(f'{v:.1f}x vs {k.split()[-1]}' for k, v in speedup.items())
        if speedup else '',
        {True: 'yes', False: 'no'}.get(row.get('matched'), ''),
    ])
  caption = (
      f"{config['num_signals']} signals, n = {config['signal_dim']}, "
      f"p = {config['code_dim']}, unit-norm Gaussian dictionary, "
      f"lam = {config['lam']}, M = {config['m']}; "
      f"{environment['jax_backend']} ({environment['device']}, "
      f"{environment['cpu_count']} CPU cores); l0enc: median of "
      f"{config['repeats']} runs after a warm-up, scikit-learn: one run.\n\n")
  return caption + reporting.markdown_table(
      ['problem', 'method', 'time (s)', 'mean objective', 'mean nonzeros',
       'speed-up', 'matched quality'], table_rows)


def plot(results: dict[str, Any], path: str) -> None:
  """Time against objective gap for the l1 problem; bars for M-sparse."""
  figure = matplotlib.figure.Figure(figsize=(11, 4.2))
  left, right = figure.subplots(1, 2)
  l1_rows = [r for r in results['rows'] if r['problem'] == 'l1']
  best = min([r['objective'] for r in l1_rows] +
             [s['objective'] for s in results['fista_ladder']])
  gap = lambda objective: max(objective / best - 1, 1e-9)
  ladder = results['fista_ladder']
  left.plot([s['seconds'] for s in ladder], [gap(s['objective']) for s in ladder],
            'o-', label='l0enc FISTA (tolerance ladder)')
  for row in l1_rows:
    if row['method'].startswith('scikit-learn'):
      left.plot(row['seconds'], gap(row['objective']), 's', markersize=9,
                label=row['method'])
  left.set(xscale='log', yscale='log', xlabel='time (s)',
           ylabel='relative objective gap to the best',
           title='l1 problem (3)')
  left.legend(fontsize=8)
  m_rows = [r for r in results['rows'] if r['problem'] == 'm']
  right.barh([r['method'] for r in m_rows], [r['seconds'] for r in m_rows],
             color=['tab:gray', 'tab:blue', 'tab:orange'])
  for index, row in enumerate(m_rows):
    right.text(row['seconds'], index, f" {row['objective']:.4f}",
               va='center', fontsize=8)
  right.set(xscale='log', xlabel='time (s); label: mean objective',
            title=f"M-sparse problem (2), M = {results['config']['m']}")
  figure.suptitle(markdown(results).split('\n')[0], fontsize=8)
  figure.tight_layout()
  reporting.save_figure_atomic(figure, path, dpi=120)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  python_logging.getLogger('jax').setLevel(python_logging.WARNING)
  settings = configs.to_settings(Settings, CONFIG.value)
  results = run_benchmark(**dataclasses.asdict(settings))
  table = markdown(results)
  reporting.write_results(FLAGS.workdir, results, table)
  plot(results, os.path.join(FLAGS.workdir, 'time_vs_objective.png'))
  print(table)


if __name__ == '__main__':
  app.run(main)
