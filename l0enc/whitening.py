"""Regularized ZCA whitening of signals (a preprocessing step).

The step size of IHT and of every encoder built from a dictionary by eq. (8)
is `mu = 1 / ||D||_2^2`, and a dictionary learned on strongly correlated
signals (MNIST patches: a few directions hold most of the energy) is as
ill-conditioned as they are. Whitening the signals first flattens their
spectrum, so the learned dictionary is close to a tight frame, `mu` is of
order one and a handful of IHT iterations get close to the optimal codes:
the regime the l0 paper's IHT rows describe (Tables 1-3; see DESIGN.md, "The
regime matters more than the formula").

With the training covariance `Sigma = U diag(s) U^T`, regularized ZCA maps

    x -> U diag((s + epsilon)^-1/2) U^T (x - mean),

so the whitened training covariance is `(Sigma + epsilon I)^-1 Sigma`: the
directions with variance well above `epsilon` get unit variance, those well
below it (pixel noise) are left small instead of being blown up. ZCA (rather
than PCA whitening) keeps the result in the signal domain, so whitened
patches still look like images.

The whitening is fitted on the training split only and applied unchanged to
validation and test signals.
"""

from typing import NamedTuple

import numpy as np

from l0enc import validation


class Whitening(NamedTuple):
  """A fitted ZCA whitening `x -> (x - mean) @ transform` (NumPy arrays).

  Attributes:
    mean: shape `(n,)`, the training mean.
    transform: shape `(n, n)`, symmetric: `U diag((s + eps)^-1/2) U^T`.
    epsilon: the regularizer it was fitted with.
  """
  mean: np.ndarray
  transform: np.ndarray
  epsilon: float


def fit_zca(signals, epsilon: float) -> Whitening:
  """Fits regularized ZCA whitening on training signals.

  Computed in float64 (an `n x n` eigendecomposition, cheap for image
  patches) so that the transform is symmetric to rounding.

  Args:
    signals: training signals, shape `(N, n)` with `N >= 2`, finite.
    epsilon: the regularizer added to the covariance's eigenvalues,
      positive, in the units of the signals' variance (for patches normalized
      to unit variance per pixel, as `data.preprocess_patches` returns them,
      the eigenvalues average about 1).

  Returns:
    The fitted `Whitening`.
  """
  signals = np.asarray(signals)
  if signals.ndim != 2 or signals.shape[0] < 2:
    raise ValueError('signals must have shape (N, n) with N >= 2, got '
                     f'{signals.shape}.')
  validation.check_finite('signals', signals)
  validation.check_positive('epsilon', epsilon)
  signals = signals.astype(np.float64)
  mean = signals.mean(axis=0)
  centred = signals - mean
  covariance = centred.T @ centred / (len(signals) - 1)
  eigenvalues, eigenvectors = np.linalg.eigh(covariance)
  # Rounding can make the smallest eigenvalues slightly negative.
  eigenvalues = np.maximum(eigenvalues, 0.0)
  transform = (eigenvectors / np.sqrt(eigenvalues + epsilon)) @ eigenvectors.T
  return Whitening(mean=mean, transform=(transform + transform.T) / 2,
                   epsilon=float(epsilon))


def apply(whitening: Whitening, signals) -> np.ndarray:
  """Whitens signals with a fitted whitening, in their own float dtype.

  Args:
    whitening: from `fit_zca`.
    signals: shape `(..., n)`.

  Returns:
    `(signals - mean) @ transform`, same shape and dtype as `signals`
    (float32 for integer input).
  """
  signals = np.asarray(signals)
  size = whitening.mean.shape[0]
  if signals.shape[-1:] != (size,):
    raise ValueError(f'signals must have shape (..., {size}) to match the '
                     f'whitening, got {signals.shape}.')
  dtype = signals.dtype if np.issubdtype(signals.dtype, np.floating) else (
      np.float32)
  return ((signals - whitening.mean) @ whitening.transform).astype(dtype)


def whiten_patches(whitening: Whitening, patches) -> np.ndarray:
  """Whitens image patches, then standardizes each patch again.

  After `data.preprocess_patches` every patch has zero mean and unit
  variance; whitening changes both, so each whitened patch is centred and
  divided by its standard deviation once more (squared norm n, as the
  paper's preprocessing leaves it). A patch whose whitened standard
  deviation is zero (possible only for a degenerate whitening) is left at
  zero rather than divided by zero.

  Args:
    whitening: from `fit_zca`, fitted on the training patches.
    patches: shape `(N, n)`.

  Returns:
    The whitened, standardized patches, shape `(N, n)`.
  """
  whitened = apply(whitening, patches)
  centred = whitened - whitened.mean(axis=-1, keepdims=True)
  std = centred.std(axis=-1, keepdims=True)
  return centred / np.where(std > 0, std, 1)
