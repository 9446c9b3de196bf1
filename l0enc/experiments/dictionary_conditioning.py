"""Why IHT converges slowly on MNIST dictionaries: a conditioning diagnostic.

On the 16x16 MNIST patches of the approximation experiment (per-image mean
removal and variance normalization) and on the same patches with the
training set's mean image removed as well, `measure` reports the share of
the energy along the first principal direction, learns a dictionary, and
measures its squared spectral norm ||D||_2^2 (1/mu of IHT) and the
prediction error of IHT after 2, 5 and 10 iterations against the optimal
codes (l1 solution, then IHT to convergence) of problem (1). A coherent
dictionary makes mu small and IHT slow.
"""

import dataclasses
import logging

import jax
import jax.numpy as jnp
import numpy as np

from l0enc import dictionary as dictionary_lib
from l0enc import metrics
from l0enc import reporting
from l0enc import solvers
from l0enc import validation

IHT_ITERATIONS = (2, 5, 10)


@dataclasses.dataclass(frozen=True)
class Settings:
  """The diagnostic's settings.

  Attributes:
    code_dim: p, the dictionary size.
    lam: l0 weight of problem (1), our scaling.
    dictionary_lam: l1 weight of dictionary learning.
    dictionary_steps: minibatches of dictionary learning.
    num_train: training patches used (the first of the split).
    num_test: test patches coded.
    seed: seed of dictionary learning.
  """
  code_dim: int = 128
  lam: float = 0.25
  dictionary_lam: float = 1.0
  dictionary_steps: int = 2000
  num_train: int = 20_000
  num_test: int = 2_000
  seed: int = 0

  def __post_init__(self):
    big = 2**31 - 1
    validation.check_int_in_range('code_dim', self.code_dim, 1, big)
    validation.check_positive('lam', self.lam)
    validation.check_positive('dictionary_lam', self.dictionary_lam)
    validation.check_int_in_range('dictionary_steps', self.dictionary_steps,
                                  1, big)
    validation.check_int_in_range('num_train', self.num_train, 2, big)
    validation.check_int_in_range('num_test', self.num_test, 1, big)
    validation.check_int_in_range('seed', self.seed, 0, big)


def first_direction_share(x: np.ndarray) -> float:
  """Share of the energy `sum ||x||^2` along the top right singular vector."""
  singular_values = np.linalg.svd(x, compute_uv=False)
  return float(singular_values[0]**2 / np.sum(singular_values**2))


def variants(x_train: np.ndarray, x_test: np.ndarray
             ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """The preprocessings compared: `{name: (train patches, test patches)}`."""
  mean_image = x_train.mean(axis=0)
  return {
      'per-image normalization (the paper\'s)': (x_train, x_test),
      '+ training mean image removed': (x_train - mean_image,
                                        x_test - mean_image),
  }


def measure(settings: Settings, x_train: np.ndarray,
            x_test: np.ndarray) -> dict[str, float]:
  """Conditioning of a dictionary learned on `x_train`, IHT on `x_test`.

  Returns:
    `{'first_direction_energy_share', 'dictionary_lipschitz',
    'optimal_codes_iterations', 'mean_nonzeros',
    'iht_<k>_prediction_error' for k in IHT_ITERATIONS}`.
  """
  dictionary = dictionary_lib.learn_dictionary(
      jax.random.PRNGKey(settings.seed), jnp.asarray(x_train),
      settings.code_dim, lam=settings.dictionary_lam,
      num_steps=settings.dictionary_steps,
      log_every=max(settings.dictionary_steps // 5, 1)).dictionary
  signals = jnp.asarray(x_test)
  optimal = solvers.optimal_codes(signals, dictionary, lam=settings.lam,
                                  tol=1e-6, max_iterations=10_000)
  result = {'first_direction_energy_share': first_direction_share(x_train),
            'dictionary_lipschitz': float(solvers.lipschitz_constant(
                dictionary)),
            'optimal_codes_iterations': int(optimal.num_iterations.max()),
            'mean_nonzeros': float(jnp.mean(jnp.sum(optimal.codes != 0, -1)))}
  for iterations in IHT_ITERATIONS:
    codes = solvers.iht(signals, dictionary, lam=settings.lam,
                        num_iterations=iterations).codes
    result[f'iht_{iterations}_prediction_error'] = float(
        metrics.prediction_error(codes, optimal.codes))
  return result


def run(settings: Settings, x_train: np.ndarray,
        x_test: np.ndarray) -> dict[str, dict[str, float]]:
  """`measure` on each of the `variants` of the patches (their first ones)."""
  results = {}
  for name, (train_part, test_part) in variants(
      x_train[:settings.num_train], x_test[:settings.num_test]).items():
    logging.info('Variant: %s', name)
    results[name] = measure(settings, train_part, test_part)
  return results


def report(settings: Settings, results: dict[str, dict[str, float]]) -> str:
  """Markdown: one row per preprocessing."""
  return (
      f'MNIST 16x16 patches, {settings.num_train} for dictionary learning '
      f'(p = {settings.code_dim}, l1 weight {settings.dictionary_lam:g}, '
      f'{settings.dictionary_steps} steps), {settings.num_test} test patches '
      f'coded for problem (1) with lam = {settings.lam:g}; IHT with '
      'mu = 1/||D||_2^2.\n\n' + reporting.markdown_table(
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
