"""Tests of l0enc.whitening against NumPy references."""

import chex
import numpy as np
import pytest

from l0enc import whitening


def correlated_signals(num_signals=4000, n=12, seed=0):
  """Signals whose covariance has eigenvalues from 0.001 to 30."""
  rng = np.random.default_rng(seed)
  basis, _ = np.linalg.qr(rng.normal(size=(n, n)))
  scales = np.sqrt(np.geomspace(30.0, 0.001, n))
  return (rng.normal(size=(num_signals, n)) * scales) @ basis.T + 3.0


@pytest.mark.parametrize('epsilon', [1e-3, 0.1, 1.0])
def test_whitened_covariance_is_regularized_identity(epsilon):
  signals = correlated_signals()
  fitted = whitening.fit_zca(signals, epsilon)
  whitened = whitening.apply(fitted, signals)
  covariance = np.cov(signals, rowvar=False)
  # (Sigma + eps I)^-1 Sigma, computed with a linear solve, not eigh.
  expected = np.linalg.solve(covariance + epsilon * np.eye(12), covariance)
  chex.assert_trees_all_close(np.cov(whitened, rowvar=False), expected,
                              atol=1e-8)
  chex.assert_trees_all_close(whitened.mean(axis=0), np.zeros(12), atol=1e-9)


def test_zca_transform_is_symmetric_and_matches_inverse_square_root():
  signals = correlated_signals()
  fitted = whitening.fit_zca(signals, 0.1)
  chex.assert_trees_all_close(fitted.transform, fitted.transform.T, atol=0)
  # T^2 (Sigma + eps I) = I for the symmetric ZCA transform T.
  covariance = np.cov(signals, rowvar=False)
  chex.assert_trees_all_close(
      fitted.transform @ fitted.transform @ (covariance + 0.1 * np.eye(12)),
      np.eye(12), atol=1e-9)


def test_fitted_on_train_applied_unchanged_to_test():
  signals = correlated_signals()
  fitted = whitening.fit_zca(signals[:3000], 0.1)
  test = signals[3000:].astype(np.float32)
  whitened = whitening.apply(fitted, test)
  assert whitened.dtype == np.float32
  chex.assert_trees_all_close(
      whitened, (test - fitted.mean) @ fitted.transform, rtol=1e-5)


@pytest.mark.parametrize('signals, epsilon, message', [
    (np.ones((1, 4)), 0.1, 'signals'),
    (np.ones(4), 0.1, 'signals'),
    (np.full((5, 4), np.nan), 0.1, 'signals'),
    (np.ones((5, 4)), 0.0, 'epsilon'),
    (np.ones((5, 4)), -1.0, 'epsilon'),
])
def test_fit_rejects_bad_input(signals, epsilon, message):
  with pytest.raises(ValueError, match=message):
    whitening.fit_zca(signals, epsilon)


def test_apply_rejects_wrong_dimension():
  fitted = whitening.fit_zca(correlated_signals(), 0.1)
  with pytest.raises(ValueError, match='signals'):
    whitening.apply(fitted, np.ones((3, 5)))


def test_whitened_patches_are_standardized_again():
  signals = correlated_signals()
  fitted = whitening.fit_zca(signals, 0.1)
  patches = whitening.whiten_patches(fitted, signals[:50])
  chex.assert_trees_all_close(patches.mean(axis=1), np.zeros(50), atol=1e-9)
  chex.assert_trees_all_close(patches.std(axis=1), np.ones(50), atol=1e-9)
  whitened = whitening.apply(fitted, signals[:50])
  # The same direction as the whitened patch less its mean.
  centred = whitened - whitened.mean(axis=1, keepdims=True)
  chex.assert_trees_all_close(
      patches, centred / centred.std(axis=1, keepdims=True), atol=1e-9)
