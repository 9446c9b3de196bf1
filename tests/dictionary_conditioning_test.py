"""Tests of the dictionary-conditioning diagnostic on tiny synthetic patches."""

import numpy as np
import pytest

from l0enc.experiments import dictionary_conditioning

TINY = dictionary_conditioning.Settings(code_dim=12, lam=0.05,
                                        dictionary_steps=5, num_train=60,
                                        num_test=10)


@pytest.mark.parametrize('seed', [0, 1])
def test_first_direction_share_against_the_eigenvalues(seed):
  x = np.random.default_rng(seed).normal(size=(50, 6)) * np.arange(1, 7)
  eigenvalues = np.linalg.eigvalsh(x.T @ x)
  np.testing.assert_allclose(
      dictionary_conditioning.first_direction_share(x),
      eigenvalues[-1] / eigenvalues.sum(), rtol=1e-6)
  rank_one = np.outer(np.arange(1.0, 5.0), np.ones(6))
  np.testing.assert_allclose(
      dictionary_conditioning.first_direction_share(rank_one), 1.0)


def test_run_measures_both_variants_and_reports_them():
  rng = np.random.default_rng(0)
  x_train, x_test = (rng.normal(size=(n, 8)).astype(np.float32) + 2.0
                     for n in (100, 20))
  results = dictionary_conditioning.run(TINY, x_train, x_test)
  assert list(results) == list(dictionary_conditioning.variants(
      x_train, x_test))
  paper, centered = results.values()
  # Removing the mean image takes the common offset out of the patches.
  assert (centered['first_direction_energy_share'] <
          paper['first_direction_energy_share'])
  for result in results.values():
    assert result['dictionary_lipschitz'] > 0
    for k in dictionary_conditioning.IHT_ITERATIONS:
      assert np.isfinite(result[f'iht_{k}_prediction_error'])
  report = dictionary_conditioning.report(TINY, results)
  assert '60 for dictionary learning (p = 12' in report
  assert report.count('\n|') == 4  # Header, rule, two variants.


@pytest.mark.parametrize('field, value', [
    ('code_dim', 0), ('lam', -1.0), ('dictionary_lam', 0.0),
    ('dictionary_steps', 0), ('num_train', 1), ('num_test', 0), ('seed', -1)])
def test_bad_settings_raise_naming_the_field(field, value):
  with pytest.raises(ValueError, match=field):
    dictionary_conditioning.Settings(**{field: value})
