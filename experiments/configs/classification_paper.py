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
      classification.ClassificationConfig, {
          'mnist': dict(lam=1.0, num_epochs=50, lista_pretrain_epochs=20,
                        dictionary_steps=2_000),
          'indian_pines': dict(lam=3.0, head_weight_decay=1e-3,
                               num_epochs=300, lista_pretrain_epochs=50,
                               dictionary_steps=1_000),
      }, code_dims=paper.TASK_CODE_DIMS,
      encoders=classification.ENCODERS)
