"""Tiny runs of the classification and clustering experiments.

Shared by their tests (and the reports' tests): each run is computed once
per test session, in a temporary directory removed at exit.
"""

import atexit
import functools
import shutil
import tempfile

from l0enc.experiments import classification
from l0enc.experiments import clustering

TINY = dict(dataset='synthetic', code_dims=(8,), ms=(2,), num_epochs=2,
            lista_pretrain_epochs=1, dictionary_steps=2, codes_iterations=10,
            num_synthetic=192, signal_dim=6, num_classes=3, batch_size=32)


def _workdir(name: str) -> str:
  workdir = tempfile.mkdtemp(prefix=f'l0enc_{name}_')
  atexit.register(shutil.rmtree, workdir, ignore_errors=True)
  return workdir


@functools.cache
def classification_run():
  """`(config, workdir, results)` of every classifier at p = 8."""
  config = classification.ClassificationConfig(
      encoders=('lista', 'l0', 'msparse', 'tdsc'), tdsc_iterations=20,
      **TINY)
  workdir = _workdir('classification')
  return config, workdir, classification.run(config, workdir)


@functools.cache
def clustering_run():
  """`(config, workdir, results)` of the references and Deep l0 at p = 8."""
  config = clustering.ClusteringConfig(encoders=('l0',), kmeans_restarts=2,
                                       kmeans_iterations=5, **TINY)
  workdir = _workdir('clustering')
  return config, workdir, clustering.run(config, workdir)
