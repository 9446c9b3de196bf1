"""Clustering, the paper's Tables 6-7 in full (a GPU).

p = 128/256/512, M = 10/20/30 (the settings' default).
"""

import ml_collections

from l0enc.experiments import clustering
from l0enc.experiments import paper
from l0enc.experiments import task_configs


def get_config() -> ml_collections.ConfigDict:
  return task_configs.datasets_config(
      clustering.ClusteringConfig, task_configs.CLUSTERING_PAPER_SECTIONS,
      code_dims=paper.TASK_CODE_DIMS, **task_configs.CLUSTERING_PAPER_SHARED)
