r"""Where do the paper's iterative rows start? IHT from zero against IHT
from the l1 solution, on the problems of a finished approximation run.

The l0 paper makes its "optimal codes" by solving the l1 problems first
"to obtain a good initialization for l0 problems, and then run the
iterative algorithms (6) or (10) until convergence". Its Tables 1-3 also
report those iterative algorithms after 2, 5 and 10 iterations without
saying where they start. Our calibration (`calibrate_regime.py`) matches
the rows of IHT from zero; this script measures the other reading, IHT
after k iterations from the l1 solution, on the same test signals,
dictionary and optimal codes, and puts both beside the paper's rows.

    python experiments/iht_start.py \
        --workdir=results/approximation_whitened --output_dir=results/iht_start

Reads `<workdir>/<problem>_p<p>/problem.npz` and `results.json` (written by
`experiments/approximation.py`); writes results.json, results.md and
README.md to --output_dir.
"""

import os

from absl import app
from absl import flags
from absl import logging

from l0enc import reporting
from l0enc import validation
from l0enc.experiments import iht_start
from l0enc.experiments import paper

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', 'results/approximation_whitened',
                    'A finished approximation run: its <problem>_p<p> '
                    'directories hold problem.npz and results.json.')
flags.DEFINE_string('output_dir', 'results/iht_start',
                    'Where results.json, results.md and README.md go.')
flags.DEFINE_multi_enum('problems', ['l0', 'msparse'], ['l0', 'msparse'],
                        "Problems to read: 'l0' (1) and/or 'msparse' (2).")
flags.DEFINE_multi_integer('p', list(paper.APPROXIMATION_CODE_DIMS),
                           'Code sizes to read (repeat the flag).')
validation.register_flag_checks(existing_dirs=('workdir',))
flags.register_validator(
    'p', lambda sizes: all(p in paper.APPROXIMATION_CODE_DIMS for p in sizes),
    message=f"must be among the paper's {paper.APPROXIMATION_CODE_DIMS}")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  results = {'workdir': FLAGS.workdir, 'settings': {}}
  for problem in FLAGS.problems:
    for p in FLAGS.p:
      logging.info('%s, p = %d: IHT from zero and from the l1 solution.',
                   problem, p)
      curves = iht_start.setting_curves(
          os.path.join(FLAGS.workdir, f'{problem}_p{p}'))
      results['settings'].setdefault(problem, {})[str(p)] = curves
  os.makedirs(FLAGS.output_dir, exist_ok=True)
  text = iht_start.report(results)
  reporting.write_json_atomic(os.path.join(FLAGS.output_dir, 'results.json'),
                              results)
  reporting.write_text_atomic(os.path.join(FLAGS.output_dir, 'results.md'),
                              iht_start.tables(results))
  reporting.write_text_atomic(os.path.join(FLAGS.output_dir, 'README.md'),
                              text)
  print(text)


if __name__ == '__main__':
  app.run(main)
