r"""Times trained deep encoders on this machine: coding and training.

    python experiments/encoding_benchmark.py \
        --workdir=workdir/approximation_paper --data_dir=<mnist dir>

Reads every finished setting of an approximation run (`<workdir>/*/`,
trained there or copied from another machine with its checkpoints and
dictionaries), rebuilds its encoder from the checkpoint of the chosen
learning rate, and times coding the test set against 10 IHT iterations
(median of repeated runs after a warm-up, `block_until_ready`), then
times one training epoch of the deep and the baseline encoder (compiled,
`train.fit`). Writes `results.json` and `results.md` to --output_dir.
"""

import os

from absl import app
from absl import flags
from absl import logging
import jax

from l0enc import data
from l0enc import reporting
from l0enc import validation
from l0enc.experiments import approximation_training

flags.DEFINE_string('workdir', 'workdir/approximation_paper',
                    'An approximation experiment workdir with finished '
                    'settings (their results.json and checkpoints).')
flags.DEFINE_string('data_dir', data.default_data_dir(), 'Directory with '
                    'mnist.npz or the four MNIST IDX files, for MNIST '
                    'settings without a cached problem.npz (default: '
                    f'${data.DATA_DIR_ENV}); without it, tensorflow-datasets '
                    'is tried.')
flags.DEFINE_string('output_dir', None, 'Where results.json and results.md '
                    'go (default: <workdir>/encoding_benchmark_<platform>).')

FLAGS = flags.FLAGS
validation.register_flag_checks(existing_dirs=('workdir', 'data_dir'))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  # As in the experiment: full float32 on both sides.
  jax.config.update('jax_default_matmul_precision', 'highest')
  settings = sorted(
      name for name in os.listdir(FLAGS.workdir)
      if os.path.exists(os.path.join(FLAGS.workdir, name,
                                     approximation_training.RESULTS_FILE)))
  if not settings:
    raise ValueError(f'{FLAGS.workdir} holds no finished setting '
                     '(<setting>/results.json); run '
                     'experiments/approximation.py first.')
  results = {}
  for name in settings:
    results[name] = approximation_training.benchmark_trained_encoder(
        os.path.join(FLAGS.workdir, name),
        dictionary_dir=os.path.join(FLAGS.workdir, 'dictionaries'),
        data_dir=FLAGS.data_dir)
    logging.info('%s: %s', name, results[name])
  platform = jax.devices()[0].platform
  output_dir = FLAGS.output_dir or os.path.join(
      FLAGS.workdir, f'encoding_benchmark_{platform}')
  cores = f', {os.cpu_count()} CPU cores' if platform == 'cpu' else ''
  report = (
      f'Trained 2-stage encoders coding the test set against 10 IHT '
      f'iterations (median of {approximation_training.SPEED_REPEATS} runs '
      'after a warm-up), and one training epoch of each encoder (the second '
      'of two, after compilation); one process alone on the '
      f'machine{cores}.\n\n'
      + reporting.markdown_table(
          ['setting', 'test signals', 'encoder (s)', 'IHT, 10 it. (s)',
           'speed-up', 'training signals', 'deep encoder epoch (s)',
           'baseline epoch (s)', 'device'],
          [[name.replace('_p', ', p = '), r['num_signals'],
            f"{r['encoder_seconds']:.4f}", f"{r['iht_10_seconds']:.4f}",
            f"{r['speedup']:.1f}x", r['num_train_signals'],
            f"{r['deep_epoch_seconds']:.2f}",
            f"{r['baseline_epoch_seconds']:.2f}", r['device']]
           for name, r in results.items()]))
  reporting.write_results(output_dir, results, report)
  print(report)


if __name__ == '__main__':
  app.run(main)
