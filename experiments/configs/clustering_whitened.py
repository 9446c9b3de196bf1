"""Clustering in the whitened regime (issue 13): Tables 6-7 rerun.

The paper preset with the images ZCA-whitened over all samples (no label
is used) at eps = 10, the eps chosen on MNIST's validation split
(classification_whitened.py): clustering has no labelled split to choose
it on. Rows as in classification_whitened.py:
tuned LISTA, Deep l0 in the paper's form and ours ('l0_floor'), Deep
M-Sparse, the fully connected ReLU reference ('fc'), and the k-means
references. 500 dictionary steps (CMU PIE's paper preset: 2,000), to fit
the CPU.
"""

import ml_collections

from l0enc.experiments import clustering
from l0enc.experiments import paper
from l0enc.experiments import task_configs

ENCODERS = ('lista', 'l0', 'l0_floor', 'msparse', 'fc')


def get_config() -> ml_collections.ConfigDict:
  return task_configs.datasets_config(
      clustering.ClusteringConfig, {
          **task_configs.CLUSTERING_PAPER_SECTIONS,
          'pie': dict(task_configs.CLUSTERING_PAPER_SECTIONS['pie'],
                      dictionary_steps=500)},
      code_dims=paper.TASK_CODE_DIMS, **task_configs.CLUSTERING_PAPER_SHARED,
      whitening_epsilon=10.0, encoders=ENCODERS)
