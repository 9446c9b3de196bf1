r"""Why IHT converges slowly on MNIST dictionaries: a conditioning diagnostic.

    python experiments/dictionary_conditioning.py --data_dir=<mnist dir>

On the 16x16 MNIST patches of the approximation experiment (per-image mean
removal and variance normalization) and on the same patches with the
training set's mean image removed as well, it reports the share of the
energy along the first principal direction, learns a dictionary, and
measures its squared spectral norm ||D||_2^2 (1/mu of IHT) and the
prediction error of IHT after 2, 5 and 10 iterations against the optimal
codes (l1 solution, then IHT to convergence) of problem (1)
(l0enc.experiments.dictionary_conditioning). The settings come from a config
file (default experiments/configs/dictionary_conditioning_paper.py; change a
field with `--config.field=value`). Writes results.json and results.md to
--workdir.
"""

import os

from absl import app
from absl import flags
import jax

from l0enc import data
from l0enc import reporting
from l0enc import validation
from l0enc.experiments import approximation
from l0enc.experiments import configs
from l0enc.experiments import dictionary_conditioning

configs.define_config_flag(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs',
                 'dictionary_conditioning_paper.py'),
    dictionary_conditioning.Settings,
    help_string='Config file of the diagnostic (experiments/configs/'
    'dictionary_conditioning_<preset>.py); change a field with '
    '--config.field=value.')
flags.DEFINE_string('data_dir', data.default_data_dir(), 'Directory with '
                    'mnist.npz or the four MNIST IDX files (default: '
                    f'${data.DATA_DIR_ENV}); without it, tensorflow-datasets '
                    'is tried.')
flags.DEFINE_string('workdir', 'workdir/dictionary_conditioning',
                    'Where results.json and results.md go.')

FLAGS = flags.FLAGS
validation.register_flag_checks(existing_dirs=('data_dir',))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  jax.config.update('jax_default_matmul_precision', 'highest')
  settings = configs.to_settings(dictionary_conditioning.Settings,
                                 FLAGS.config)
  results = dictionary_conditioning.run(
      settings, *approximation.mnist_patches(FLAGS.data_dir))
  report = dictionary_conditioning.report(settings, results)
  reporting.write_results(FLAGS.workdir, results, report)
  print(report)


if __name__ == '__main__':
  app.run(main)
