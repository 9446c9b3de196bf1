r"""MNIST classification with DDSE and baselines I-V: the DDSE paper's Figs. 3-6.

    python experiments/ddse.py --data_dir=data                  # quick config
    python experiments/ddse.py --data_dir=data --config.sweeps="()" \
        --config.num_epochs=1                        # default setting only
    python experiments/ddse.py --data_dir=data \
        --config=experiments/configs/ddse_paper.py   # for a GPU
    # The same, as four processes sharing one GPU, then the report:
    for i in 0 1 2 3; do python experiments/ddse.py --data_dir=data \
        --config=experiments/configs/ddse_paper.py \
        --num_shards=4 --shard_index=$i & done; wait
    python experiments/ddse.py --data_dir=data \
        --config=experiments/configs/ddse_paper.py

Trains the six methods (I fc, II fc_dropout, III fc_dropconnect, IV
lista_dropout, V ddse_no_shortcuts, DDSE) at the default setting and at
every point of the selected sweeps (s/n: Fig. 3, m: Fig. 4, ts/t: Fig. 5,
k: Fig. 6), each (setting, method) in its own resumable unit
`<workdir>/units/<unit>/`. Writes the combined `results.json`, `results.md`
(the default-setting table, one table per sweep, the compactness of the
default DDSE) and one PNG per swept figure to --workdir. Interrupt it at any
time and run the same command again: finished units are read back and the
interrupted one resumes after its last finished epoch.

The settings are `l0enc.experiments.ddse_sweeps.Settings`, configured by
experiments/configs/ddse_<preset>.py (quick, the default; paper; synthetic,
a smoke test without data); any field can be overridden, e.g.
--config.code_dim=512 or --config.sweep_values.num_stages="(1,2)".
"""

import logging as python_logging
import os

from absl import app
from absl import flags
from absl import logging

from l0enc import data
from l0enc import reporting
from l0enc import validation
from l0enc.experiments import configs
from l0enc.experiments import ddse_reports
from l0enc.experiments import ddse_sweeps

_CONFIG = configs.define_config_flag(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs',
                 'ddse_quick.py'), ddse_sweeps.Settings,
    help_string='The experiment: a get_config() file of experiments/configs/ '
    '(fields: l0enc.experiments.ddse_sweeps.Settings); override fields as '
    '--config.<field>=<value>.')
flags.DEFINE_integer('num_shards', 1, 'Deal the units into this many shards '
                     'and run only one of them (--shard_index), so that '
                     'several processes or GPUs share one --workdir; then '
                     'run once more without sharding to gather the report.',
                     lower_bound=1)
flags.DEFINE_integer('shard_index', 0, 'The shard this process runs, in '
                     '[0, --num_shards).', lower_bound=0)
flags.DEFINE_string('data_dir', data.default_data_dir(), 'Directory with '
                    'mnist.npz or the four MNIST IDX files (default: '
                    f'${data.DATA_DIR_ENV}); without it, tensorflow-datasets '
                    'is tried.')
flags.DEFINE_string('workdir', None, 'Output and checkpoint directory '
                    '(default: workdir/ddse_<preset>).')
flags.DEFINE_bool('report_only', False, 'Train nothing: write the report '
                  'from the finished units in --workdir (without the data).')

FLAGS = flags.FLAGS
validation.register_flag_checks(existing_dirs=('data_dir',))
flags.register_multi_flags_validator(
    ['shard_index', 'num_shards'],
    lambda values: values['shard_index'] < values['num_shards'],
    message='--shard_index must be in [0, --num_shards)')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  python_logging.getLogger('jax').setLevel(python_logging.WARNING)
  settings = configs.to_settings(ddse_sweeps.Settings, _CONFIG.value,
                                 data_dir=FLAGS.data_dir)
  base, sweeps = settings.base, settings.sweeps_to_run
  units = ddse_sweeps.plan(base, sweeps, settings.methods).units
  logging.info('%d units: %s', len(units), ', '.join(units))
  workdir = FLAGS.workdir or os.path.join('workdir',
                                          f'ddse_{settings.preset}')
  combined = ddse_sweeps.run_experiment(
      base, sweeps, workdir, settings.methods,
      measure_compactness=settings.compactness,
      shard_index=FLAGS.shard_index, num_shards=FLAGS.num_shards,
      report_only=FLAGS.report_only)
  if FLAGS.num_shards > 1:
    logging.info('Shard %d of %d done (%d units); run without --num_shards '
                 'to write the report.', FLAGS.shard_index, FLAGS.num_shards,
                 len(combined['units']))
    return
  missing = sorted(set(units) - set(combined['units']))
  if missing:
    raise app.UsageError(f'{len(missing)} unit(s) of {workdir} have not '
                         f'finished ({", ".join(missing)}): run without '
                         '--report_only first.')
  combined['preset'] = settings.preset
  caption = ddse_reports.budget_caption(combined, settings.preset,
                                        settings.note)
  combined['caption'] = caption
  text = ddse_reports.report(combined, caption)
  reporting.write_results(workdir, combined, text)
  for sweep in sweeps:
    figure = ddse_reports.sweep_figure(combined, sweep, caption)
    number = ddse_sweeps.SWEEPS[sweep].figure.split()[-1].rstrip('.')
    reporting.save_figure_atomic(
        figure, os.path.join(workdir, f'fig{number}_{sweep}.png'), dpi=120)
  print(text)


if __name__ == '__main__':
  app.run(main)
