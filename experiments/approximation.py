r"""Code approximation by deep l0 encoders: the l0 paper's Tables 1-3.

    python experiments/approximation.py                     # quick, synthetic
    python experiments/approximation.py --data_dir=DIR \
        --config=experiments/configs/approximation_paper.py
    python experiments/approximation.py --data_dir=DIR \
        --config=experiments/configs/approximation_paper_literal.py

The settings come from a config file (experiments/configs/
approximation_<preset>.py; any field can be changed as
`--config.field=value`). The paper config runs in the calibrated regime:
ZCA-whitened patches and a dictionary whose unstated settings (whitening
regularizer, l1 weight) were chosen per p by experiments/calibrate_regime.py
to match the paper's IHT rows; it reads that choice from its `calibration`
file. paper_literal is the paper's preprocessing read literally (no
whitening), kept as the previous regime.

For every (problem, p) it learns or takes the dictionary, computes the
optimal codes, evaluates IHT at 2/5/10 iterations, trains the baseline
encoder and the deep encoder, and times the encoder against 10 IHT
iterations. Each setting lives in `<workdir>/<problem>_p<p>/` and resumes
there after a kill; the combined `results.json`, `results.md` (the paper's
layout, its numbers in brackets for MNIST) and `errors.png` go to --workdir.
"""

import dataclasses
import logging as python_logging
import os

from absl import app
from absl import flags
from absl import logging
import jax

from l0enc import reporting
from l0enc import validation
from l0enc.experiments import approximation
from l0enc.experiments import approximation_reports
from l0enc.experiments import approximation_training
from l0enc.experiments import calibration
from l0enc.experiments import configs

_CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        'configs')
_CONFIG_HELP = (
    'Config file of the experiment (experiments/configs/approximation_'
    '<preset>.py: quick, a synthetic run of a few minutes; paper, the MNIST '
    'Tables 1-3 in the calibrated (whitened) regime; paper_literal, the '
    'same without whitening); change a field with --config.field=value.')
flags.DEFINE_multi_integer('p', None, 'Dictionary size(s) p to run, in '
                           "place of the config's code_dims; repeat the flag "
                           'for several.')
flags.DEFINE_string('data_dir', None, 'Directory with mnist.npz or the four '
                    'MNIST IDX files; without it, tensorflow-datasets is '
                    'tried.')
flags.DEFINE_string('dictionary_dir', os.path.join('workdir', 'dictionaries'),
                    'Cache of learned MNIST dictionaries (and whitenings), '
                    'shared with experiments/calibrate_regime.py.')
flags.DEFINE_string('workdir', None, 'Output and checkpoint directory '
                    '(default: workdir/<name of the config file>).')
flags.DEFINE_bool('report_only', False, 'Compute nothing: write the tables '
                  'and the plot of the finished settings in --workdir.')

FLAGS = flags.FLAGS
validation.register_flag_checks(positive=('p',), existing_dirs=('data_dir',))


def settings_from_flags(
    config, code_dims, data_dir
) -> tuple[approximation.Experiment, list[approximation.Config]]:
  """The experiment and its settings, from the config and the flags.

  The calibrated regime, if the config names a calibration, replaces the
  config's whitening and dictionary settings at each p.
  """
  overrides = dict(data_dir=data_dir)
  if code_dims:
    overrides['code_dims'] = tuple(code_dims)
  return approximation.experiment_settings(
      config, read_regimes=calibration.read_choice, **overrides)


# Built while parsing, so that a bad field fails before any computation; the
# checks are the settings dataclasses' own.
configs.define_config_flag(
    os.path.join(_CONFIGS, 'approximation_quick.py'),
    lambda config: settings_from_flags(config, FLAGS['p'].value,
                                       FLAGS['data_dir'].value),
    help_string=_CONFIG_HELP)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  python_logging.getLogger('jax').setLevel(python_logging.WARNING)
  # Full float32 matmuls everywhere: GPUs default to TF32, which would make
  # the optimal codes inexact and time the encoder at lower precision than
  # the IHT it is compared with.
  jax.config.update('jax_default_matmul_precision', 'highest')
  experiment, settings = settings_from_flags(FLAGS.config, FLAGS.p,
                                             FLAGS.data_dir)
  workdir = FLAGS.workdir or configs.default_workdir(FLAGS['config'])
  results = []
  for config in settings:
    logging.info('Setting: %s', dataclasses.asdict(config))
    result = approximation_training.run(
        config, os.path.join(workdir, f'{config.problem}_p{config.code_dim}'),
        dictionary_dir=FLAGS.dictionary_dir, report_only=FLAGS.report_only)
    if result is not None:
      results.append(result)
  if not results:
    raise ValueError(f'{workdir} holds no finished setting to report.')
  report = approximation_reports.report(results)
  if experiment.previous_results:
    report += (f'\n## Previous regime ({experiment.previous_results})\n\n'
               'The same tables before the calibrated regime, kept for '
               'comparison.\n\n' + approximation_reports.report(
                   reporting.read_json(experiment.previous_results)))
  reporting.write_results(workdir, results, report)
  approximation_reports.plot(results, os.path.join(workdir, 'errors.png'))
  print(report)


if __name__ == '__main__':
  app.run(main)
