"""Classification, the paper's Tables 4-5 in full (a GPU).

All of MNIST, p = 128/256/512, M = 10/20/30 (the settings' default). With
`--dataset=mnist --config.mnist.augment=True`: the augmented run of
results/classification_augmented.
"""

import ml_collections

from l0enc.experiments import classification
from l0enc.experiments import paper
from l0enc.experiments import task_configs


def get_config() -> ml_collections.ConfigDict:
  return task_configs.datasets_config(
      classification.ClassificationConfig,
      task_configs.CLASSIFICATION_PAPER_SECTIONS,
      code_dims=paper.TASK_CODE_DIMS,
      encoders=classification.ENCODERS)
