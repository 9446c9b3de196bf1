"""Tests for l0enc.metrics against NumPy and brute-force references."""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as sklearn_metrics

from l0enc import metrics


def _sparse_codes(rng, shape, nonzero_prob=0.3):
  return rng.normal(size=shape) * (rng.random(shape) < nonzero_prob)


@pytest.mark.parametrize('shape', [(7,), (20, 12), (3, 4, 5)])
def test_prediction_error_and_nmse_match_numpy(shape):
  rng = np.random.default_rng(0)
  target = _sparse_codes(rng, shape)
  target.flat[0] = 1.0  # Never all zero.
  predicted = target + 0.1 * rng.normal(size=shape)
  ratio = np.sum((predicted - target)**2) / np.sum(target**2)

  np.testing.assert_allclose(
      metrics.prediction_error(predicted, target), 100 * ratio, rtol=1e-5)
  np.testing.assert_allclose(
      metrics.nmse_db(predicted, target), 10 * np.log10(ratio), rtol=1e-5)


@pytest.mark.parametrize('shape', [(7,), (20, 12), (3, 4, 5)])
def test_sample_nmse_matches_numpy(shape):
  rng = np.random.default_rng(1)
  target = _sparse_codes(rng, shape)
  target[..., 0] = 1.0  # No sample all zero.
  predicted = target + 0.1 * rng.normal(size=shape)
  expected = 10 * np.log10(np.sum((predicted - target)**2, -1)
                           / np.sum(target**2, -1))
  chex.assert_trees_all_close(metrics.sample_nmse_db(predicted, target),
                              expected, rtol=1e-5)
  chex.assert_trees_all_close(jax.jit(metrics.sample_nmse_db)(predicted,
                                                              target),
                              expected, rtol=1e-5)


def test_prediction_error_is_a_ratio_of_sums_not_a_mean_of_ratios():
  target = np.array([[1.0, 0.0], [10.0, 0.0]])
  predicted = np.array([[0.0, 0.0], [10.0, 0.0]])
  # Sample-wise ratios are 100 % and 0 %; the total is 1 / 101.
  np.testing.assert_allclose(
      metrics.prediction_error(predicted, target), 100 / 101, rtol=1e-6)


def test_exact_prediction():
  target = np.array([[0.0, 2.0, -1.0]])
  assert metrics.prediction_error(target, target) == 0
  assert metrics.nmse_db(target, target) == -np.inf
  assert metrics.support_error(target, target) == 0


@pytest.mark.parametrize('metric', [
    metrics.prediction_error, metrics.nmse_db, metrics.sample_nmse_db,
    metrics.support_error])
def test_code_metrics_reject_mismatched_shapes(metric):
  with pytest.raises(ValueError, match=r'same shape.*\(4, 3\).*\(4, 2\)'):
    metric(np.ones((4, 3)), np.ones((4, 2)))


def test_support_error_counts_symmetric_difference_per_sample():
  target = np.array([[1.0, 0.0, 2.0, 0.0],
                     [0.0, 0.0, 0.0, 3.0]])
  predicted = np.array([[5.0, 4.0, 0.0, 0.0],   # 1 extra + 1 missing = 2.
                        [0.0, 0.0, 0.0, -1.0]])  # Same support, wrong value.
  assert metrics.support_error(predicted, target) == 1.0


@pytest.mark.parametrize('shape', [(50, 16), (2, 5, 9)])
def test_support_error_matches_numpy(shape):
  rng = np.random.default_rng(1)
  predicted, target = _sparse_codes(rng, shape), _sparse_codes(rng, shape)
  expected = np.mean(np.sum(np.logical_xor(predicted != 0, target != 0), -1))
  np.testing.assert_allclose(
      metrics.support_error(predicted, target), expected, rtol=1e-6)


def test_support_error_rejects_scalars():
  with pytest.raises(ValueError, match='predicted'):
    metrics.support_error(1.0, 1.0)


@pytest.mark.parametrize('predicted_as', ['logits', 'labels'])
def test_classification_error(predicted_as):
  labels = np.array([0, 1, 2, 2, 1])
  predicted_labels = np.array([0, 2, 2, 1, 1])  # Two of five wrong.
  if predicted_as == 'logits':
    predictions = np.eye(3)[predicted_labels] + 0.1
  else:
    predictions = predicted_labels
  np.testing.assert_allclose(
      metrics.classification_error(predictions, labels), 40.0, rtol=1e-6)


def test_classification_error_rejects_mismatched_shapes():
  with pytest.raises(ValueError, match='logits_or_labels'):
    metrics.classification_error(np.zeros((4, 3)), np.zeros(5, int))


def test_jnp_metrics_work_under_jit():
  rng = np.random.default_rng(2)
  target = jnp.asarray(_sparse_codes(rng, (8, 6)) + np.eye(8, 6))
  predicted = target + 0.5
  for metric in (metrics.prediction_error, metrics.nmse_db,
                 metrics.support_error):
    chex.assert_trees_all_close(
        jax.jit(metric)(predicted, target), metric(predicted, target),
        rtol=1e-6)
  logits, labels = jnp.asarray(rng.normal(size=(8, 3))), jnp.arange(8) % 3
  chex.assert_trees_all_close(
      jax.jit(metrics.classification_error)(logits, labels),
      metrics.classification_error(logits, labels))


def _brute_force_clustering_error(cluster_ids, labels):
  """Best accuracy over every injective map between clusters and classes."""
  clusters, classes = np.unique(cluster_ids), np.unique(labels)
  # Dummy classes (None) absorb surplus clusters; they never match a label.
  padded_classes = list(classes) + [None] * max(0, len(clusters) - len(classes))
  best_correct = 0
  for assignment in itertools.permutations(padded_classes, len(clusters)):
    mapping = dict(zip(clusters, assignment))
    best_correct = max(best_correct, sum(
        mapping[cluster] == label
        for cluster, label in zip(cluster_ids, labels)))
  return 100 * (1 - best_correct / len(labels))


@pytest.mark.parametrize('num_clusters,num_classes,seed', [
    (3, 3, 0), (4, 4, 1), (2, 4, 2), (5, 3, 3), (1, 3, 4), (4, 1, 5)])
def test_clustering_error_matches_brute_force(num_clusters, num_classes,
                                              seed):
  rng = np.random.default_rng(seed)
  labels = rng.integers(num_classes, size=30)
  cluster_ids = rng.integers(num_clusters, size=30)
  np.testing.assert_allclose(
      metrics.clustering_error(cluster_ids, labels),
      _brute_force_clustering_error(cluster_ids, labels), atol=1e-9)


def test_clustering_error_is_zero_for_relabelled_clusters():
  labels = np.array(['cat', 'dog', 'dog', 'emu', 'cat'])
  cluster_ids = np.array([7, 2, 2, 0, 7])
  assert metrics.clustering_error(cluster_ids, labels) == 0.0
  assert metrics.normalized_mutual_information(cluster_ids, labels) == (
      pytest.approx(1.0))


@pytest.mark.parametrize('num_clusters,num_classes,seed', [
    (3, 3, 0), (5, 2, 1), (2, 6, 2), (10, 10, 3)])
def test_nmi_matches_sklearn(num_clusters, num_classes, seed):
  rng = np.random.default_rng(seed)
  labels = rng.integers(num_classes, size=200)
  # Correlate the clusters with the labels so NMI is far from 0 and 1.
  cluster_ids = np.where(rng.random(200) < 0.6, labels % num_clusters,
                         rng.integers(num_clusters, size=200))
  np.testing.assert_allclose(
      metrics.normalized_mutual_information(cluster_ids, labels),
      sklearn_metrics.normalized_mutual_info_score(labels, cluster_ids),
      rtol=1e-10)


@pytest.mark.parametrize('cluster_ids,labels', [
    ([0, 0, 0], [1, 1, 1]),  # Both trivial: sklearn's convention is 1.
    ([0, 0, 0, 0], [0, 1, 0, 1]),  # One side trivial: 0.
    ([0, 1, 0, 1], [0, 0, 1, 1]),  # Independent: 0.
])
def test_nmi_edge_cases_match_sklearn(cluster_ids, labels):
  assert metrics.normalized_mutual_information(cluster_ids, labels) == (
      pytest.approx(
          sklearn_metrics.normalized_mutual_info_score(labels, cluster_ids)))


@pytest.mark.parametrize(
    'metric', [metrics.clustering_error, metrics.normalized_mutual_information])
@pytest.mark.parametrize('cluster_ids,labels,message', [
    (np.zeros(4), np.zeros(5), 'same length'),
    (np.zeros((2, 2)), np.zeros((2, 2)), '1-D'),
    (np.zeros(0), np.zeros(0), 'empty'),
])
def test_clustering_metrics_reject_bad_shapes(metric, cluster_ids, labels,
                                              message):
  with pytest.raises(ValueError, match=message):
    metric(cluster_ids, labels)
