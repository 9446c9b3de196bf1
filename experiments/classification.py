r"""Classification with deep l0 encoders: the l0 paper's Tables 4-5.

    export L0ENC_DATA_DIR=DIR  # mnist.npz and indian_pines.npz, or flags:
    python experiments/classification.py                  # quick, ~15 min CPU
    python experiments/classification.py \
        --config=experiments/configs/classification_paper.py  # full, a GPU
    python experiments/classification.py --dataset=indian_pines \
        --config.indian_pines.code_dims='(256,)'
    python experiments/classification.py --dataset=mnist \
        --config=experiments/configs/classification_paper.py \
        --config.mnist.augment=True --workdir=results/classification_augmented

For each data set (MNIST, AVIRIS Indian Pines) and code size p it learns a
dictionary on the training signals, initializes TDSC (task-driven sparse
coding), tuned LISTA, the Deep l0-Regularized Encoder and the Deep M-Sparse
Encoder (each M) from it, and trains each end to end with a softmax head
(LISTA first regresses l1 codes).
The config (`experiments/configs/classification_<preset>.py`) has one
section per data set, whose fields are those of
`l0enc.experiments.classification.ClassificationConfig`; every value is
checked while the flags are parsed.
Each data set lives in `<workdir>/<dataset>/`, each (method, p) in its own
subdirectory that resumes after a kill. The combined `results.json`,
`results.md` (the paper's layout, its numbers in brackets, and the mean
nonzeros of the test codes before and after end-to-end training),
`learning_curves.png` and `confusion_<dataset>.png` (the best classifier by
validation error) go to --workdir.

Data: MNIST from `<data_dir>/mnist.npz` (or IDX files; without --data_dir
and $L0ENC_DATA_DIR, from tensorflow-datasets), 28x28 pixels
flattened and standardized per image; Indian Pines from --indian_pines_path,
per-band standardized spectra, 10% of each class for training (stratified,
fixed seed). A stratified 10% of the training set is held out for
validation; the test set is scored once, after the last epoch. With
`--config.mnist.augment=True`, every batch of MNIST's training images is
distorted afresh.
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
from l0enc.experiments import classification
from l0enc.experiments import configs
from l0enc.experiments import task_configs
from l0enc.experiments import task_reports

DATASETS = ('mnist', 'indian_pines')
CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs')

_CONFIG = configs.define_config_flag(
    os.path.join(CONFIGS, 'classification_quick.py'),
    task_configs.sections_builder(classification.ClassificationConfig,
                                  DATASETS),
    help_string='The settings: a get_config() file with one section per '
    'data set, the '
    'fields of ClassificationConfig (default: the quick preset; '
    'classification_paper.py: Tables 4-5 in full, for a GPU); override a '
    'field with --config.<dataset>.<field>=value.')
flags.DEFINE_multi_enum('dataset', list(DATASETS), DATASETS,
                        'Data set(s); repeat the flag for several.')
flags.DEFINE_string('data_dir', data.default_data_dir(), 'Directory of '
                    'mnist.npz (or the MNIST IDX files) and indian_pines.npz '
                    f'(default: ${data.DATA_DIR_ENV}; without it, MNIST comes '
                    'from tensorflow-datasets and Indian Pines needs '
                    '--indian_pines_path).')
flags.DEFINE_string('indian_pines_path', None, 'Indian Pines .npz (default: '
                    '<data_dir>/indian_pines.npz).')
flags.DEFINE_bool('report_only', False, 'Train nothing: write the tables '
                  'from the units already finished in --workdir (e.g. on '
                  'another machine); the others show as a dash.')
flags.DEFINE_string('workdir', None, 'Output and checkpoint directory '
                    '(default: workdir/<the config file\'s name>, e.g. '
                    'workdir/classification_quick).')

FLAGS = flags.FLAGS
validation.register_flag_checks(existing_dirs=('data_dir',),
                                existing_files=('indian_pines_path',))
validation.register_data_file_check(
    'indian_pines', 'indian_pines_path', 'indian_pines.npz',
    data.DATA_DIR_ENV, 'load_indian_pines')


def settings_of(dataset: str) -> classification.ClassificationConfig:
  """The settings of one data set: its config section and its file."""
  if dataset == 'mnist':
    data_path = FLAGS.data_dir
  else:
    data_path = validation.data_file_path(
        FLAGS.indian_pines_path, FLAGS.data_dir, 'indian_pines.npz')
  return task_configs.dataset_settings(classification.ClassificationConfig,
                                       _CONFIG.value, dataset, data_path)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  python_logging.getLogger('jax').setLevel(python_logging.WARNING)
  # Every configuration is checked before the first long computation.
  settings = [settings_of(dataset) for dataset in dict.fromkeys(
      FLAGS.dataset)]
  workdir = FLAGS.workdir or configs.default_workdir(FLAGS['config'])
  results, sections = [], []
  for config in settings:
    logging.info('Data set %s: %s', config.dataset, dataclasses.asdict(config))
    result = classification.run(config,
                                os.path.join(workdir, config.dataset),
                                report_only=FLAGS.report_only)
    results.append(result)
    best = task_reports.plot_confusion_matrix(
        result, os.path.join(workdir, f'confusion_{config.dataset}.png'))
    unit = result['units'][best]
    scale = task_reports.scale_table(result)
    sections.append(
        task_reports.paper_table(result) +
        f"\nBest classifier by validation error: {unit['row']}, p = "
        f"{unit['unit']['code_dim']} (validation {unit['validation_error']:.2f}"
        f"%, test {unit['test_error']:.2f}%); its confusion matrix is "
        f'confusion_{config.dataset}.png.\n\n' +
        task_reports.validation_table(result) + '\n\n' +
        task_reports.nonzeros_table(result) + '\n' +
        (f'{scale}\n' if scale else ''))
  report = '\n'.join(sections)
  reporting.write_results(workdir, results, report)
  task_reports.plot_learning_curves(
      results, os.path.join(workdir, 'learning_curves.png'))
  print(report)


if __name__ == '__main__':
  app.run(main)
