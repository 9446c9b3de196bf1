r"""Classification with deep l0 encoders: the l0 paper's Tables 4-5.

    export L0ENC_DATA_DIR=DIR  # mnist.npz and indian_pines.npz, or flags:
    python experiments/classification.py                  # quick, ~15 min CPU
    python experiments/classification.py --preset=paper   # full, for a GPU
    python experiments/classification.py --dataset=indian_pines --p=256
    python experiments/classification.py --preset=paper --dataset=mnist \
        --augment --workdir=results/classification_augmented

For each data set (MNIST, AVIRIS Indian Pines) and code size p it learns a
dictionary on the training signals, initializes TDSC (task-driven sparse
coding), tuned LISTA, the Deep l0-Regularized Encoder and the Deep M-Sparse
Encoder (each M) from it, and trains each end to end with a softmax head
(LISTA first regresses l1 codes).
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
--augment, MNIST's training images are distorted afresh every epoch.
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
from l0enc.experiments import task_reports
from l0enc.experiments import tasks_common

_COMMON = dict(num_stages=2, batch_size=128, optimizer='adam',
               learning_rate=1e-3, clip_norm=1.0, min_sigma=0.01,
               head_weight_decay=0.0, validation_fraction=0.1)
PRESETS = {
    # Minutes on two CPU cores: p = 128 only, a 10k-image slice of MNIST
    # (the full test set), few epochs and dictionary steps.
    'quick': {
        'mnist': dict(_COMMON, code_dims=(128,), lam=1.0, num_epochs=8,
                      lista_pretrain_epochs=4, dictionary_steps=100,
                      max_train=10_000),
        'indian_pines': dict(_COMMON, code_dims=(128,), lam=3.0,
                             head_weight_decay=1e-3, num_epochs=200,
                             lista_pretrain_epochs=20, dictionary_steps=100),
    },
    # The paper's Tables 4-5: all of MNIST, p = 128/256/512, M = 10/20/30.
    'paper': {
        'mnist': dict(_COMMON, code_dims=(128, 256, 512), lam=1.0,
                      num_epochs=50, lista_pretrain_epochs=20,
                      dictionary_steps=2_000),
        'indian_pines': dict(_COMMON, code_dims=(128, 256, 512), lam=3.0,
                             head_weight_decay=1e-3, num_epochs=300,
                             lista_pretrain_epochs=50, dictionary_steps=1_000),
    },
}
DATASETS = ('mnist', 'indian_pines')

flags.DEFINE_enum('preset', 'quick', list(PRESETS),
                  '"quick": minutes on a CPU, p = 128, an MNIST slice; '
                  '"paper": Tables 4-5 in full (a GPU).')
flags.DEFINE_multi_enum('dataset', list(DATASETS), DATASETS,
                        'Data set(s); repeat the flag for several.')
flags.DEFINE_multi_integer('p', None, "Code size(s) p (default: the preset's).",
                           lower_bound=1)
flags.DEFINE_multi_integer('m', [10, 20, 30], 'M of the Deep M-Sparse Encoder.',
                           lower_bound=1)
flags.DEFINE_multi_enum('encoder',
                        list(classification.ENCODERS),
                        classification.ENCODERS,
                        'Encoders to train (tdsc: task-driven sparse coding, '
                        'the reference).')
flags.DEFINE_integer('num_epochs', None, "End-to-end epochs (default: the "
                     "preset's).", lower_bound=1)
flags.DEFINE_integer('lista_pretrain_epochs', None, "Epochs of LISTA's "
                     "l1-code regression (default: the preset's).",
                     lower_bound=0)
flags.DEFINE_float('lam', None, 'l1 weight of dictionary learning and LISTA '
                   "(default: the preset's).")
flags.DEFINE_float('l0_lam', None, 'l0 weight of the Deep l0 encoder\'s '
                   'initialization (default: lam^2 mu / 2, mu = 1/||D||^2, so '
                   "that its threshold starts at LISTA's).")
flags.DEFINE_enum('optimizer', None, list(tasks_common.OPTIMIZERS),
                  "Optimizer (default: the preset's).")
flags.DEFINE_float('learning_rate', None, "Step size (default: the preset's).")
flags.DEFINE_float('min_sigma', None, 'Floor of the Deep l0 encoder\'s '
                   'HELU_sigma annealing 0.2, 0.02, ... (0.2: constant; '
                   "default: the preset's).")
flags.DEFINE_integer('batch_size', None, "Minibatch size (default: the "
                     "preset's, 128 as in the paper).", lower_bound=1)
flags.DEFINE_integer('max_train', None, 'Use at most this many training '
                     "examples (default: the preset's).", lower_bound=1)
flags.DEFINE_integer('max_test', None, 'Use at most this many test examples.',
                     lower_bound=1)
flags.DEFINE_integer('dictionary_steps', None, 'Minibatches of dictionary '
                     "learning (default: the preset's).", lower_bound=1)
flags.DEFINE_float('whitening_epsilon', None, 'Regularized ZCA whitening of '
                   'the signals, fitted on the training split, with this '
                   'regularizer (added to the covariance eigenvalues); '
                   "default: none (the paper's preprocessing).")
flags.DEFINE_integer('seed', 0, 'Seed of splits, dictionaries and training.',
                     lower_bound=0)
flags.DEFINE_string('data_dir', data.default_data_dir(), 'Directory of '
                    'mnist.npz (or the MNIST IDX files) and indian_pines.npz '
                    f'(default: ${data.DATA_DIR_ENV}; without it, MNIST comes '
                    'from tensorflow-datasets and Indian Pines needs '
                    '--indian_pines_path).')
flags.DEFINE_integer('spatial_window', 1, 'Indian Pines: use the mean '
                     'spectrum of the w x w window around each pixel (odd; '
                     "1: the pixel's own spectrum, as in the paper preset).",
                     lower_bound=1, upper_bound=99)
flags.DEFINE_bool('augment', False, 'MNIST: distort the training images '
                  'afresh every epoch (rotation <= 10 degrees, scale within '
                  '10%, blur, noise; classification.AUGMENTATION). Off in '
                  'the presets.')
flags.DEFINE_string('indian_pines_path', None, 'Indian Pines .npz (default: '
                    '<data_dir>/indian_pines.npz).')
flags.DEFINE_bool('report_only', False, 'Train nothing: write the tables '
                  'from the units already finished in --workdir (e.g. on '
                  'another machine); the others show as a dash.')
flags.DEFINE_string('workdir', None, 'Output and checkpoint directory '
                    '(default: workdir/classification_<preset>).')

FLAGS = flags.FLAGS
validation.register_flag_checks(
    positive=('lam', 'l0_lam', 'learning_rate', 'whitening_epsilon'),
    nonnegative=('min_sigma',), existing_dirs=('data_dir',), existing_files=('indian_pines_path',))
flags.register_validator('spatial_window', lambda window: window % 2 == 1,
                         message='must be odd (a window centred on the pixel)')


validation.register_data_file_check(
    'indian_pines', 'indian_pines_path', 'indian_pines.npz',
    data.DATA_DIR_ENV, 'load_indian_pines')


def config_from_flags(dataset: str) -> classification.ClassificationConfig:
  """The config of one data set: the preset, overridden by flags."""
  settings = dict(PRESETS[FLAGS.preset][dataset])
  for flag, field in (('p', 'code_dims'), ('num_epochs', 'num_epochs'),
                      ('lista_pretrain_epochs', 'lista_pretrain_epochs'),
                      ('lam', 'lam'), ('l0_lam', 'l0_lam'),
                      ('optimizer', 'optimizer'),
                      ('learning_rate', 'learning_rate'),
                      ('min_sigma', 'min_sigma'),
                      ('batch_size', 'batch_size'), ('max_train', 'max_train'),
                      ('max_test', 'max_test'),
                      ('dictionary_steps', 'dictionary_steps'),
                      ('whitening_epsilon', 'whitening_epsilon')):
    value = getattr(FLAGS, flag)
    if value is not None:
      settings[field] = tuple(value) if isinstance(value, list) else value
  if dataset == 'mnist':
    data_path = FLAGS.data_dir
  else:
    data_path = validation.data_file_path(
        FLAGS.indian_pines_path, FLAGS.data_dir, 'indian_pines.npz')
  if dataset == 'indian_pines':
    settings['spatial_window'] = FLAGS.spatial_window
  else:
    settings['augment'] = FLAGS.augment
  return classification.ClassificationConfig(
      dataset=dataset, encoders=tuple(FLAGS.encoder), ms=tuple(FLAGS.m),
      seed=FLAGS.seed, data_path=data_path, **settings)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  python_logging.getLogger('jax').setLevel(python_logging.WARNING)
  # Every configuration is checked before the first long computation.
  configs = [config_from_flags(dataset) for dataset in dict.fromkeys(
      FLAGS.dataset)]
  workdir = FLAGS.workdir or os.path.join('workdir',
                                          f'classification_{FLAGS.preset}')
  results, sections = [], []
  for config in configs:
    logging.info('Data set %s: %s', config.dataset, dataclasses.asdict(config))
    result = classification.run(config, os.path.join(workdir, config.dataset),
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
        task_reports.nonzeros_table(result) + '\n' +
        (f'{scale}\n' if scale else ''))
  report = '\n'.join(sections)
  reporting.write_json_atomic(os.path.join(workdir, 'results.json'), results)
  reporting.write_text_atomic(os.path.join(workdir, 'results.md'), report)
  task_reports.plot_learning_curves(
      results, os.path.join(workdir, 'learning_curves.png'))
  print(report)


if __name__ == '__main__':
  app.run(main)
