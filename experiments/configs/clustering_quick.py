"""Clustering, quick: minutes on two CPU cores (the default config).

p = 128 only, fewer epochs and dictionary steps. One section per data set;
override a field with e.g. `--config.coil20.num_epochs=3`.
"""

import ml_collections

from l0enc.experiments import clustering
from l0enc.experiments import task_configs


def get_config() -> ml_collections.ConfigDict:
  return task_configs.datasets_config(
      clustering.ClusteringConfig, {
          'coil20': dict(num_epochs=30, lista_pretrain_epochs=20),
          'pie': dict(num_epochs=10, lista_pretrain_epochs=5),
      }, code_dims=(128,), lam=1.0, learning_rate=1e-4, dictionary_steps=100)
