"""Clustering, the paper's Tables 6-7 in full (a GPU).

p = 128/256/512, M = 10/20/30 (the settings' default).
"""

import ml_collections

from l0enc.experiments import clustering
from l0enc.experiments import paper
from l0enc.experiments import task_configs


def get_config() -> ml_collections.ConfigDict:
  return task_configs.datasets_config(
      clustering.ClusteringConfig, {
          'coil20': dict(num_epochs=100, lista_pretrain_epochs=100,
                         dictionary_steps=1_000),
          'pie': dict(num_epochs=50, lista_pretrain_epochs=30,
                      dictionary_steps=2_000),
      }, code_dims=paper.TASK_CODE_DIMS, lam=1.0, learning_rate=1e-4)
