r"""Clustering with deep l0 encoders: the l0 paper's Tables 6-7.

    python experiments/clustering.py --data_dir=DIR       # quick, COIL-20
    python experiments/clustering.py --data_dir=DIR \
        --config=experiments/configs/clustering_paper.py \
        --pie_path=PIE_32x32.npz

For each data set (COIL-20, CMU PIE) and code size p it learns a dictionary
on all the images, initializes tuned LISTA, the Deep l0-Regularized Encoder
and the Deep M-Sparse Encoder (each M) from it, starts a softmax cluster head
(eq. 12) at the k-means clustering of the untrained codes, and trains encoder
and head without labels by regularized information maximization. k-means on
the inputs and on the l1 codes are the references. The config
(`experiments/configs/clustering_<preset>.py`) has one section per data set,
whose fields are those of `l0enc.experiments.clustering.ClusteringConfig`
(e.g. `--config.coil20.num_epochs=3`); every value is checked while the
flags are parsed. Each data set lives in `<workdir>/<dataset>/`, each
(method, p) in its own subdirectory that resumes after a kill;
`results.json`, `results.md` (the paper's layout, its numbers in brackets)
and `learning_curves.png` go to --workdir.

COIL-20 is read from --coil20_path, else `<data_dir>/coil20.npz` (--data_dir
defaults to $L0ENC_DATA_DIR). CMU PIE needs an `.npz` with `x` (images) and
`y` (labels) given with --pie_path (see `l0enc.data.load_pie`), else it is
skipped. Every path is checked before anything is computed.
"""

import dataclasses
import logging as python_logging
import os

from absl import app
from absl import flags
from absl import logging

from l0enc import data
from l0enc import reporting
from l0enc import validation
from l0enc.experiments import clustering
from l0enc.experiments import configs
from l0enc.experiments import task_configs
from l0enc.experiments import task_reports

DATASETS = ('coil20', 'pie')
CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs')

_CONFIG = configs.define_config_flag(
    os.path.join(CONFIGS, 'clustering_quick.py'),
    task_configs.sections_builder(clustering.ClusteringConfig,
                                  DATASETS),
    help_string='The settings: a get_config() file with one section per '
    'data set, the '
    'fields of ClusteringConfig (default: the quick preset; '
    'clustering_paper.py: Tables 6-7 in full, for a GPU); override a field '
    'with --config.<dataset>.<field>=value.')
flags.DEFINE_multi_enum('dataset', list(DATASETS), DATASETS,
                        'Data set(s); repeat the flag for several. PIE needs '
                        '--pie_path and is skipped without it.')
flags.DEFINE_string('data_dir', data.default_data_dir(), 'Directory of '
                    f'coil20.npz (default: ${data.DATA_DIR_ENV}).')
flags.DEFINE_string('coil20_path', None, 'COIL-20 .npz (default: '
                    '<data_dir>/coil20.npz).')
flags.DEFINE_string('pie_path', None, 'CMU PIE .npz with keys x and y; PIE is '
                    'skipped without it.')
flags.DEFINE_bool('report_only', False, 'Train nothing: write the tables '
                  'from the units already finished in --workdir (e.g. on '
                  'another machine); the others show as a dash.')
flags.DEFINE_string('workdir', None, 'Output and checkpoint directory '
                    '(default: workdir/<the config file\'s name>, e.g. '
                    'workdir/clustering_quick).')

FLAGS = flags.FLAGS
validation.register_flag_checks(existing_dirs=('data_dir',),
                                existing_files=('coil20_path', 'pie_path'))
validation.register_data_file_check('coil20', 'coil20_path', 'coil20.npz',
                                    data.DATA_DIR_ENV, 'load_coil20')

PIE_MISSING = (
    'Skipping CMU PIE: no --pie_path was given. Save PIE_32x32.mat (fea as x, '
    'gnd as y) with np.savez_compressed and pass --pie_path=<file.npz> to '
    'include it (see l0enc.data.load_pie).')


def settings_of(dataset: str) -> clustering.ClusteringConfig:
  """The settings of one data set: its config section and its file."""
  data_path = (FLAGS.pie_path if dataset == 'pie' else
               validation.data_file_path(FLAGS.coil20_path, FLAGS.data_dir,
                                         'coil20.npz'))
  return task_configs.dataset_settings(clustering.ClusteringConfig,
                                       _CONFIG.value, dataset, data_path)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  python_logging.getLogger('jax').setLevel(python_logging.WARNING)
  datasets = list(dict.fromkeys(FLAGS.dataset))
  notes = []
  if 'pie' in datasets and FLAGS.pie_path is None:
    logging.warning(PIE_MISSING)
    notes.append(PIE_MISSING)
    datasets.remove('pie')
  if not datasets:
    print(PIE_MISSING)
    return
  # Every configuration is checked before the first long computation.
  settings = [settings_of(dataset) for dataset in datasets]
  workdir = FLAGS.workdir or configs.default_workdir(FLAGS['config'])
  results = []
  for config in settings:
    logging.info('Data set %s: %s', config.dataset, dataclasses.asdict(config))
    results.append(clustering.run(
        config, os.path.join(workdir, config.dataset),
        report_only=FLAGS.report_only))
  report = '\n'.join([
      task_reports.paper_table(result) + '\n\n' +
      task_reports.nonzeros_table(result) + '\n' for result in results] +
      notes)
  reporting.write_results(workdir, results, report)
  task_reports.plot_learning_curves(
      results, os.path.join(workdir, 'learning_curves.png'))
  print(report)


if __name__ == '__main__':
  app.run(main)
