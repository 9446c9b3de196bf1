r"""Why IHT converges slowly on MNIST dictionaries: a conditioning diagnostic.

    python experiments/dictionary_conditioning.py --data_dir=<mnist dir>

On the 16x16 MNIST patches of the approximation experiment (per-image mean
removal and variance normalization) and on the same patches with the
training set's mean image removed as well, it reports the share of the
energy along the first principal direction, learns a dictionary, and
measures its squared spectral norm ||D||_2^2 (1/mu of IHT) and the
prediction error of IHT after 2, 5 and 10 iterations against the optimal
codes (l1 solution, then IHT to convergence) of problem (1). A coherent
dictionary makes mu small and IHT slow. Writes results.json and results.md
to --workdir.
"""

import os

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from l0enc import data
from l0enc import dictionary as dictionary_lib
from l0enc import metrics
from l0enc import reporting
from l0enc import solvers
from l0enc import validation
from l0enc.experiments import approximation

flags.DEFINE_string('data_dir', data.default_data_dir(), 'Directory with '
                    'mnist.npz or the four MNIST IDX files (default: '
                    f'${data.DATA_DIR_ENV}); without it, tensorflow-datasets '
                    'is tried.')
flags.DEFINE_integer('p', 128, 'Dictionary size.', lower_bound=1)
flags.DEFINE_float('lam', 0.25, 'l0 weight of problem (1), our scaling.')
flags.DEFINE_float('dictionary_lam', 1.0, 'l1 weight of dictionary learning.')
flags.DEFINE_integer('dictionary_steps', 2000, 'Minibatches of dictionary '
                     'learning.', lower_bound=1)
flags.DEFINE_integer('num_train', 20_000, 'Training patches used.',
                     lower_bound=2)
flags.DEFINE_integer('num_test', 2_000, 'Test patches coded.', lower_bound=1)
flags.DEFINE_integer('seed', 0, 'Seed of dictionary learning.', lower_bound=0)
validation.register_flag_checks(positive=('lam', 'dictionary_lam'),
                                existing_dirs=('data_dir',))
flags.DEFINE_string('workdir', 'workdir/dictionary_conditioning',
                    'Where results.json and results.md go.')

FLAGS = flags.FLAGS


def first_direction_share(x: np.ndarray) -> float:
  """Share of the energy `sum ||x||^2` along the top right singular vector."""
  singular_values = np.linalg.svd(x, compute_uv=False)
  return float(singular_values[0]**2 / np.sum(singular_values**2))


def measure(x_train: np.ndarray, x_test: np.ndarray) -> dict[str, float]:
  """Conditioning of a dictionary learned on `x_train`, IHT on `x_test`."""
  dictionary = dictionary_lib.learn_dictionary(
      jax.random.PRNGKey(FLAGS.seed), jnp.asarray(x_train), FLAGS.p,
      lam=FLAGS.dictionary_lam, num_steps=FLAGS.dictionary_steps,
      log_every=max(FLAGS.dictionary_steps // 5, 1)).dictionary
  signals = jnp.asarray(x_test)
  optimal = solvers.optimal_codes(signals, dictionary, lam=FLAGS.lam,
                                  tol=1e-6, max_iterations=10_000)
  result = {'first_direction_energy_share': first_direction_share(x_train),
            'dictionary_lipschitz': float(solvers.lipschitz_constant(
                dictionary)),
            'optimal_codes_iterations': int(optimal.num_iterations.max()),
            'mean_nonzeros': float(jnp.mean(jnp.sum(optimal.codes != 0, -1)))}
  for iterations in (2, 5, 10):
    codes = solvers.iht(signals, dictionary, lam=FLAGS.lam,
                        num_iterations=iterations).codes
    result[f'iht_{iterations}_prediction_error'] = float(
        metrics.prediction_error(codes, optimal.codes))
  return result


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  jax.config.update('jax_default_matmul_precision', 'highest')
  x_train, x_test = approximation.mnist_patches(FLAGS.data_dir)
  x_train, x_test = x_train[:FLAGS.num_train], x_test[:FLAGS.num_test]
  mean_image = x_train.mean(axis=0)
  variants = {
      'per-image normalization (the paper\'s)': (x_train, x_test),
      '+ training mean image removed': (x_train - mean_image,
                                        x_test - mean_image),
  }
  results = {}
  for name, (train_part, test_part) in variants.items():
    logging.info('Variant: %s', name)
    results[name] = measure(train_part, test_part)
  report = (
      f'MNIST 16x16 patches, {FLAGS.num_train} for dictionary learning '
      f'(p = {FLAGS.p}, l1 weight {FLAGS.dictionary_lam:g}, '
      f'{FLAGS.dictionary_steps} steps), {FLAGS.num_test} test patches coded '
      f'for problem (1) with lam = {FLAGS.lam:g}; IHT with mu = 1/||D||_2^2.'
      '\n\n' + reporting.markdown_table(
          ['preprocessing', 'energy along the 1st principal direction',
           '‖D‖₂²', 'IHT 2 it. (%)', 'IHT 5 it. (%)', 'IHT 10 it. (%)',
           'nonzeros of the optimal codes', 'IHT iterations to converge'],
          [[name, f"{r['first_direction_energy_share']:.0%}",
            f"{r['dictionary_lipschitz']:.1f}",
            f"{r['iht_2_prediction_error']:.1f}",
            f"{r['iht_5_prediction_error']:.1f}",
            f"{r['iht_10_prediction_error']:.1f}",
            f"{r['mean_nonzeros']:.1f}", r['optimal_codes_iterations']]
           for name, r in results.items()]))
  os.makedirs(FLAGS.workdir, exist_ok=True)
  reporting.write_json_atomic(os.path.join(FLAGS.workdir, 'results.json'),
                              results)
  reporting.write_text_atomic(os.path.join(FLAGS.workdir, 'results.md'),
                              report)
  print(report)


if __name__ == '__main__':
  app.run(main)
