"""IHT from zero against IHT from the l1 solution on a finished approximation
run's problems: which reading gives the l0 paper's iterative rows
(`experiments/iht_start.py`).

The paper makes its "optimal codes" by solving the l1 problems first and
then running the iterative algorithms to convergence; its Tables 1-3 report
those algorithms after 2, 5 and 10 iterations without saying where they
start. Our calibration matches IHT from zero; these functions measure both.
"""

import os

import jax.numpy as jnp

from l0enc import reporting
from l0enc import solvers
from l0enc import validation
from l0enc.experiments import approximation
from l0enc.experiments import paper

# The paper's metric of each problem's rows (Tables 1 and 2, and Table 3).
METRICS = {'l0': ('prediction_error',),
           'msparse': ('prediction_error', 'support_error')}
PAPER_TABLE = {('l0', 'prediction_error'): 'l0',
               ('msparse', 'prediction_error'): 'msparse',
               ('msparse', 'support_error'): 'support'}
STARTS = ('zero', 'l1')


def setting_curves(setting_dir: str) -> dict:
  """IHT's test metrics after each iteration, from zero and from the l1
  solution, for one finished setting."""
  problem_path = os.path.join(setting_dir, 'problem.npz')
  results_path = os.path.join(setting_dir, 'results.json')
  for path in (problem_path, results_path):
    if not os.path.exists(path):
      raise FileNotFoundError(f'{path} is missing: run experiments/'
                              'approximation.py with this --workdir first.')
  config = approximation.config_from_json(
      reporting.read_json(results_path)['config'])
  problem = validation.load_npz(problem_path, approximation.CACHE_REMEDY)
  x = jnp.asarray(problem['x_test'])
  dictionary = jnp.asarray(problem['dictionary'])
  target = problem['codes_test']
  warm = solvers.l1_warm_start(
      x, dictionary, lam=config.lam if config.problem == 'l0' else None,
      tol=config.codes_tol, max_iterations=config.codes_max_iterations)
  last = max(config.iht_iterations)
  return {
      'config': approximation.config_to_json(config),
      'l1_start': approximation.code_metrics(warm.codes, target),
      'zero': approximation.iht_curve(x, dictionary, target, config, last),
      'l1': approximation.iht_curve(x, dictionary, target, config, last,
                                    init=warm.codes)}


def paper_value(problem: str, metric: str, iterations: int,
                code_dim: int | str) -> float:
  """The paper's row for IHT after `iterations` at p = `code_dim`."""
  return paper.APPROXIMATION_TABLES[PAPER_TABLE[problem, metric]][
      f'IHT ({iterations} iterations)'][
          paper.APPROXIMATION_CODE_DIMS.index(int(code_dim))]


def tables(results: dict) -> str:
  lines = []
  for problem, by_dim in results['settings'].items():
    dims = sorted(by_dim, key=int)
    iterations = by_dim[dims[0]]['config']['iht_iterations']
    for metric in METRICS[problem]:
      headers = ['IHT iterations'] + [
          f'p = {p}: {label}' for p in dims
          for label in ('paper', 'from zero', 'from the l1 solution')]
      table = []
      for k in iterations:
        row = [str(k)]
        for p in dims:
          row += [f'{paper_value(problem, metric, k, p):.2f}'] + [
              f"{by_dim[p][start][k - 1][metric]:.2f}" for start in STARTS]
        table.append(row)
      table.append(['0 (the l1 solution itself)'] + [
          cell for p in dims
          for cell in ('-', '-', f"{by_dim[p]['l1_start'][metric]:.2f}")])
      lines.append(f'### {problem}: {metric.replace("_", " ")}\n')
      lines.append(reporting.markdown_table(headers, table))
  return '\n'.join(lines)


def reading(results: dict) -> str:
  """Per p, which start comes closer to the paper's rows (mean absolute gap
  over the iteration counts), and in how many cells each start is below the
  paper's value."""
  lines = []
  for problem, by_dim in results['settings'].items():
    for metric in METRICS[problem]:
      parts, below, cells = [], {start: 0 for start in STARTS}, 0
      for p in sorted(by_dim, key=int):
        curves = by_dim[p]
        gaps = {start: [] for start in STARTS}
        for k in curves['config']['iht_iterations']:
          theirs = paper_value(problem, metric, k, p)
          cells += 1
          for start in STARTS:
            ours = curves[start][k - 1][metric]
            gaps[start].append(abs(ours - theirs))
            below[start] += ours < theirs
        mean = {start: sum(v) / len(v) for start, v in gaps.items()}
        parts.append(f"p = {p}: {mean['zero']:.2f} from zero, "
                     f"{mean['l1']:.2f} from the l1 solution")
      lines.append(
          f"- {problem}, {metric.replace('_', ' ')}, mean absolute gap to the "
          f"paper's rows: {'; '.join(parts)}. Below the paper's value: "
          f"{below['zero']} of {cells} cells from zero, {below['l1']} of "
          f'{cells} from the l1 solution.')
  return '\n'.join(lines)


def report(results: dict) -> str:
  return ('# IHT from zero or from the l1 solution: which reading gives the '
          "paper's iterative rows\n\n"
          f"```bash\npython experiments/iht_start.py "
          f"--workdir={results['workdir']}\n```\n\n"
          f"Test signals, dictionaries and optimal codes of "
          f"`{results['workdir']}` (experiments/approximation.py). IHT after "
          'k iterations, started from zero (our calibration\'s reading) and '
          'from the l1 solution the optimal codes start from (FISTA to the '
          "run's tolerance, l1 weight `solvers.default_l1_lam`), beside the "
          "paper's Tables 1-3. Errors in % of the optimal codes' energy; "
          'support error in mismatched positions per sample.\n\n'
          + tables(results) + '\n## Reading\n\n' + reading(results) + '\n')
