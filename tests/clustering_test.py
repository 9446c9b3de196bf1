"""Tests of l0enc.experiments.clustering on tiny data."""

import dataclasses
import os

import numpy as np
import pytest

from l0enc import whitening
from l0enc.experiments import clustering
import task_runs

TINY = task_runs.TINY


@pytest.fixture(name='clustering_run')
def fixture_clustering_run():
  return task_runs.clustering_run()


def test_clustering_results(clustering_run):
  config, workdir, results = clustering_run
  assert list(results['units']) == ['kmeans_input', 'kmeans_codes_p8',
                                    'l0_p8']
  for unit in results['units'].values():
    assert 0 <= unit['error'] < 100 and 0 <= unit['nmi'] <= 1
    assert 1 <= unit['clusters_used'] <= config.num_classes
  trained = results['units']['l0_p8']
  assert len(trained['history']) == config.num_epochs
  assert trained['temperature'] > 0
  assert 'error' in trained['initial_kmeans']
  for key in ('mean_code_nonzeros', 'initial_mean_code_nonzeros'):
    assert 0 <= trained[key] <= 8
  assert clustering.run(config, workdir)['units'] == results['units']
  assert os.path.exists(os.path.join(workdir, 'l0_p8', 'train',
                                     'checkpoint.json'))


@pytest.mark.parametrize('changes, message', [
    (dict(dataset='mnist'), 'dataset must be one of'),
    (dict(dataset='pie'), 'needs data_path'),
    (dict(encoders=('tdsc',)), 'encoders must be among'),
    (dict(marginal_weight=-1.0), 'marginal_weight'),
    (dict(kmeans_restarts=0), 'kmeans_restarts'),
])
def test_clustering_config_errors(changes, message):
  with pytest.raises(ValueError, match=message):
    clustering.ClusteringConfig(**{**TINY, **changes})


def test_whitening_without_per_image_standardization_for_the_mixture():
  config = clustering.ClusteringConfig(encoders=('l0',), whitening_epsilon=0.5,
                               **TINY)
  whitened = clustering.load_clustering_data(config)
  plain = clustering.load_clustering_data(dataclasses.replace(
      config, whitening_epsilon=None))
  np.testing.assert_allclose(
      whitened.x, whitening.apply(whitening.fit_zca(plain.x, 0.5), plain.x),
      atol=1e-5)
