"""Evaluation metrics of the Deep ℓ0 Encoders and DDSE papers.

Code and classification metrics are `jnp` functions that work under `jit`;
codes are batched along the last axis, with any leading batch axes. Clustering
metrics need a combinatorial matching and run on the host with NumPy/SciPy.
All errors are in percent, as in the papers' tables.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

from l0enc import validation


def prediction_error(predicted: jax.Array, target: jax.Array) -> jax.Array:
  """Total prediction error `100 · Σ‖â − a*‖² / Σ‖a*‖²` over the set, in %.

  This is the Deep ℓ0 Encoders paper's code approximation error (Tables 1–2):
  one ratio of sums, not a mean of per-sample ratios, so samples with small
  codes do not dominate.

  Args:
    predicted: predicted codes â, shape (..., code_dim).
    target: reference codes a*, same shape.

  Returns:
    A scalar; inf or NaN if `target` is all zero.
  """
  return 100.0 * _relative_squared_error(predicted, target)


def nmse_db(predicted: jax.Array, target: jax.Array) -> jax.Array:
  """Normalized mean squared error `10 log₁₀(Σ‖â − a*‖² / Σ‖a*‖²)`, in dB.

  Args:
    predicted: predicted values, shape (..., dim).
    target: reference values, same shape.

  Returns:
    A scalar; -inf for an exact prediction.
  """
  return 10.0 * jnp.log10(_relative_squared_error(predicted, target))


def sample_nmse_db(predicted: jax.Array, target: jax.Array) -> jax.Array:
  """The NMSE of each sample, `10 log₁₀(‖â − a*‖² / ‖a*‖²)`, in dB.

  `nmse_db` is a ratio of sums, so a few badly recovered samples can set it;
  the distribution of this one (its median, its worst) tells whether they do.

  Args:
    predicted: predicted values, shape (..., dim).
    target: reference values, same shape.

  Returns:
    Shape `(...)`: one value per sample; -inf where a sample is exact, NaN
    or +inf where its target is all zero (it has no relative error).
  """
  predicted, target = _as_real_pair(predicted, target)
  return 10.0 * jnp.log10(jnp.sum((predicted - target)**2, axis=-1)
                          / jnp.sum(target**2, axis=-1))


def _relative_squared_error(predicted: jax.Array,
                            target: jax.Array) -> jax.Array:
  predicted, target = _as_real_pair(predicted, target)
  return jnp.sum((predicted - target)**2) / jnp.sum(target**2)


def support_error(predicted: jax.Array, target: jax.Array) -> jax.Array:
  """Mean number of mismatched nonzero positions per sample (Table 3).

  For each sample, counts the positions where exactly one of `predicted` and
  `target` is nonzero (the size of the symmetric difference of the supports),
  then averages over samples. Zero means exact zero: the codes come from hard
  thresholds. When both supports have M entries, this counts every missed atom
  twice, once where it is missing and once where the wrong atom sits.

  Args:
    predicted: predicted codes, shape (..., code_dim).
    target: reference codes, same shape.

  Returns:
    A scalar, the mean count over all leading (sample) axes.
  """
  predicted, target = _as_real_pair(predicted, target)
  validation.check_rank_at_least('predicted', predicted, 1)
  mismatched = (predicted != 0) != (target != 0)
  return jnp.mean(jnp.sum(mismatched, axis=-1))


def classification_error(logits_or_labels: jax.Array,
                         labels: jax.Array) -> jax.Array:
  """Percentage of misclassified samples.

  Args:
    logits_or_labels: either scores of shape (..., num_classes), whose argmax
      is the prediction, or predicted labels with the shape of `labels`.
    labels: true integer labels, shape (...).

  Returns:
    A scalar in [0, 100].
  """
  logits_or_labels, labels = jnp.asarray(logits_or_labels), jnp.asarray(labels)
  for name, value in (('logits_or_labels', logits_or_labels),
                      ('labels', labels)):
    if jnp.issubdtype(value.dtype, jnp.complexfloating):
      raise ValueError(f'{name} must be real, got dtype {value.dtype}.')
  if logits_or_labels.shape == labels.shape:
    predictions = logits_or_labels
  elif logits_or_labels.shape[:-1] == labels.shape:
    predictions = jnp.argmax(logits_or_labels, axis=-1)
  else:
    raise ValueError(
        'logits_or_labels must have shape labels.shape + (num_classes,) or '
        f'labels.shape, got {logits_or_labels.shape} with labels '
        f'{labels.shape}.')
  return 100.0 * jnp.mean(predictions != labels)


def clustering_error(cluster_ids: Any, labels: Any) -> float:
  """Clustering error after the best one-to-one matching, in % (Tables 6–7).

  Clusters are matched to classes by the Hungarian algorithm on the
  contingency matrix, maximizing the number of samples whose cluster maps to
  their class. With more clusters than classes, the unmatched clusters count
  as errors, and vice versa.

  Args:
    cluster_ids: predicted cluster of each sample, shape (num_samples,); any
      hashable values.
    labels: true class of each sample, same shape.

  Returns:
    A float in [0, 100).
  """
  contingency = _contingency_matrix(cluster_ids, labels)
  rows, cols = scipy.optimize.linear_sum_assignment(contingency, maximize=True)
  return 100.0 * (1.0 - contingency[rows, cols].sum() / contingency.sum())


def normalized_mutual_information(cluster_ids: Any, labels: Any) -> float:
  """NMI with arithmetic-mean normalization, `I(U; V) / ((H(U) + H(V)) / 2)`.

  Matches `sklearn.metrics.normalized_mutual_info_score` with its default
  `average_method='arithmetic'`, including 1.0 when both labelings put all
  samples in one group.

  Args:
    cluster_ids: predicted cluster of each sample, shape (num_samples,).
    labels: true class of each sample, same shape.

  Returns:
    A float in [0, 1].
  """
  joint = _contingency_matrix(cluster_ids, labels)
  joint /= joint.sum()
  cluster_marginal, label_marginal = joint.sum(axis=1), joint.sum(axis=0)
  entropy_sum = _entropy(cluster_marginal) + _entropy(label_marginal)
  if entropy_sum == 0:
    return 1.0
  nonzero = joint > 0
  outer = np.outer(cluster_marginal, label_marginal)
  mutual_information = np.sum(
      joint[nonzero] * np.log(joint[nonzero] / outer[nonzero]))
  # Rounding can make an independent pair's information slightly negative.
  return float(max(mutual_information, 0.0) / (entropy_sum / 2))


def _entropy(probabilities: np.ndarray) -> float:
  probabilities = probabilities[probabilities > 0]
  return float(-np.sum(probabilities * np.log(probabilities)))


def _contingency_matrix(cluster_ids: Any, labels: Any) -> np.ndarray:
  """Counts (float64) of samples per (cluster, class) pair."""
  cluster_ids, labels = np.asarray(cluster_ids), np.asarray(labels)
  if cluster_ids.ndim != 1 or cluster_ids.shape != labels.shape:
    raise ValueError('cluster_ids and labels must be 1-D of the same length, '
                     f'got shapes {cluster_ids.shape} and {labels.shape}.')
  if cluster_ids.size == 0:
    raise ValueError('cluster_ids and labels must not be empty.')
  _, cluster_index = np.unique(cluster_ids, return_inverse=True)
  _, label_index = np.unique(labels, return_inverse=True)
  contingency = np.zeros((cluster_index.max() + 1, label_index.max() + 1))
  np.add.at(contingency, (cluster_index, label_index), 1)
  return contingency


def _as_real_pair(predicted: Any, target: Any) -> tuple[jax.Array, jax.Array]:
  """Both as real float arrays of one shape (integers cast, complex refused)."""
  _check_same_shape(predicted, target)
  return (validation.as_float_array('predicted', predicted,
                                    allow_bfloat16=True),
          validation.as_float_array('target', target, allow_bfloat16=True))


def _check_same_shape(predicted: Any, target: Any) -> None:
  if np.shape(predicted) != np.shape(target):
    raise ValueError('predicted and target must have the same shape, got '
                     f'{np.shape(predicted)} and {np.shape(target)}.')
