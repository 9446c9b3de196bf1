r"""Clustering with deep l0 encoders: the l0 paper's Tables 6-7.

    python experiments/clustering.py --data_dir=DIR       # quick, COIL-20
    python experiments/clustering.py --data_dir=DIR --preset=paper \
        --pie_path=PIE_32x32.npz

For each data set (COIL-20, CMU PIE) and code size p it learns a dictionary
on all the images, initializes tuned LISTA, the Deep l0-Regularized Encoder
and the Deep M-Sparse Encoder (each M) from it, starts a softmax cluster head
(eq. 12) at the k-means clustering of the untrained codes, and trains encoder
and head without labels by regularized information maximization. k-means on
the inputs and on the l1 codes are the references. Each data set lives in
`<workdir>/<dataset>/`, each (method, p) in its own subdirectory that
resumes after a kill; `results.json`, `results.md` (the paper's layout, its
numbers in brackets) and `learning_curves.png` go to --workdir.

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
from l0enc.experiments import task_reports
from l0enc.experiments import tasks_common

_COMMON = dict(num_stages=2, batch_size=256, optimizer='adam',
               learning_rate=1e-4, clip_norm=1.0, min_sigma=0.01,
               head_weight_decay=1e-4, marginal_weight=1.0,
               kmeans_restarts=10, kmeans_iterations=100)
PRESETS = {
    # Minutes on two CPU cores: p = 128 only, fewer epochs and steps.
    'quick': {
        'coil20': dict(_COMMON, code_dims=(128,), lam=1.0, num_epochs=30,
                       lista_pretrain_epochs=20, dictionary_steps=100),
        'pie': dict(_COMMON, code_dims=(128,), lam=1.0, num_epochs=10,
                    lista_pretrain_epochs=5, dictionary_steps=100),
    },
    # The paper's Tables 6-7: p = 128/256/512, M = 10/20/30.
    'paper': {
        'coil20': dict(_COMMON, code_dims=(128, 256, 512), lam=1.0,
                       num_epochs=100, lista_pretrain_epochs=100,
                       dictionary_steps=1_000),
        'pie': dict(_COMMON, code_dims=(128, 256, 512), lam=1.0,
                    num_epochs=50, lista_pretrain_epochs=30,
                    dictionary_steps=2_000),
    },
}
DATASETS = ('coil20', 'pie')

flags.DEFINE_enum('preset', 'quick', list(PRESETS),
                  '"quick": minutes on a CPU, p = 128; "paper": Tables 6-7 in '
                  'full (a GPU).')
flags.DEFINE_multi_enum('dataset', list(DATASETS), DATASETS,
                        'Data set(s); repeat the flag for several. PIE needs '
                        '--pie_path and is skipped without it.')
flags.DEFINE_multi_integer('p', None, "Code size(s) p (default: the preset's).",
                           lower_bound=1)
flags.DEFINE_multi_integer('m', [10, 20, 30], 'M of the Deep M-Sparse Encoder.',
                           lower_bound=1)
flags.DEFINE_multi_enum('encoder', list(tasks_common.ENCODERS),
                        tasks_common.ENCODERS, 'Encoders to train.')
flags.DEFINE_integer('num_epochs', None, "End-to-end epochs (default: the "
                     "preset's).", lower_bound=1)
flags.DEFINE_integer('lista_pretrain_epochs', None, "Epochs of LISTA's "
                     "l1-code regression (default: the preset's).",
                     lower_bound=0)
flags.DEFINE_float('lam', None, 'l1 weight of dictionary learning and LISTA '
                   "(default: the preset's).")
flags.DEFINE_float('learning_rate', None, "Step size (default: the preset's).")
flags.DEFINE_float('min_sigma', None, 'Floor of the Deep l0 encoder\'s '
                   'HELU_sigma annealing 0.2, 0.02, ... (0.2: constant; '
                   "default: the preset's).")
flags.DEFINE_float('marginal_weight', None, 'gamma: weight of the marginal '
                   "entropy in the loss (default: the preset's).")
flags.DEFINE_float('head_weight_decay', None, 'L2 weight of the cluster head '
                   "(default: the preset's).")
flags.DEFINE_integer('dictionary_steps', None, 'Minibatches of dictionary '
                     "learning (default: the preset's).", lower_bound=1)
flags.DEFINE_float('whitening_epsilon', None, 'Regularized ZCA whitening of '
                   'the signals, fitted on the training split, with this '
                   'regularizer (added to the covariance eigenvalues); '
                   "default: none (the paper's preprocessing).")
flags.DEFINE_integer('seed', 0, 'Seed of dictionaries, k-means and training.',
                     lower_bound=0)
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
                    '(default: workdir/clustering_<preset>).')

FLAGS = flags.FLAGS
validation.register_flag_checks(
    positive=('lam', 'learning_rate', 'whitening_epsilon'),
    nonnegative=('min_sigma', 'marginal_weight', 'head_weight_decay'),
    existing_dirs=('data_dir',), existing_files=('coil20_path', 'pie_path'))


validation.register_data_file_check('coil20', 'coil20_path', 'coil20.npz',
                                    data.DATA_DIR_ENV, 'load_coil20')

PIE_MISSING = (
    'Skipping CMU PIE: no --pie_path was given. Save PIE_32x32.mat (fea as x, '
    'gnd as y) with np.savez_compressed and pass --pie_path=<file.npz> to '
    'include it (see l0enc.data.load_pie).')


def config_from_flags(dataset: str) -> clustering.ClusteringConfig:
  """The config of one data set: the preset, overridden by flags."""
  settings = dict(PRESETS[FLAGS.preset][dataset])
  for flag, field in (('p', 'code_dims'), ('num_epochs', 'num_epochs'),
                      ('lista_pretrain_epochs', 'lista_pretrain_epochs'),
                      ('lam', 'lam'), ('learning_rate', 'learning_rate'),
                      ('min_sigma', 'min_sigma'),
                      ('marginal_weight', 'marginal_weight'),
                      ('head_weight_decay', 'head_weight_decay'),
                      ('dictionary_steps', 'dictionary_steps'),
                      ('whitening_epsilon', 'whitening_epsilon')):
    value = getattr(FLAGS, flag)
    if value is not None:
      settings[field] = tuple(value) if isinstance(value, list) else value
  data_path = (FLAGS.pie_path if dataset == 'pie' else
               validation.data_file_path(FLAGS.coil20_path, FLAGS.data_dir,
                                         'coil20.npz'))
  return clustering.ClusteringConfig(
      dataset=dataset, encoders=tuple(FLAGS.encoder), ms=tuple(FLAGS.m),
      seed=FLAGS.seed, data_path=data_path, **settings)


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
  configs = [config_from_flags(dataset) for dataset in datasets]
  workdir = FLAGS.workdir or os.path.join('workdir',
                                          f'clustering_{FLAGS.preset}')
  results = []
  for config in configs:
    logging.info('Data set %s: %s', config.dataset, dataclasses.asdict(config))
    results.append(clustering.run(
        config, os.path.join(workdir, config.dataset),
        report_only=FLAGS.report_only))
  report = '\n'.join([task_reports.paper_table(result)
                      for result in results] + notes)
  reporting.write_json_atomic(os.path.join(workdir, 'results.json'), results)
  reporting.write_text_atomic(os.path.join(workdir, 'results.md'), report)
  task_reports.plot_learning_curves(
      results, os.path.join(workdir, 'learning_curves.png'))
  print(report)


if __name__ == '__main__':
  app.run(main)
