"""Classification, quick: minutes on two CPU cores (the default config).

p = 128 only, a 10k-image slice of MNIST (the full test set), few epochs and
dictionary steps. One section per data set; override a field with e.g.
`--config.mnist.num_epochs=3`.
"""

import ml_collections

from l0enc.experiments import classification
from l0enc.experiments import task_configs


def get_config() -> ml_collections.ConfigDict:
  return task_configs.datasets_config(
      classification.ClassificationConfig, {
          'mnist': dict(code_dims=(128,), lam=1.0, num_epochs=8,
                        lista_pretrain_epochs=4, dictionary_steps=100,
                        max_train=10_000),
          'indian_pines': dict(code_dims=(128,), lam=3.0,
                               head_weight_decay=1e-3, num_epochs=200,
                               lista_pretrain_epochs=20,
                               dictionary_steps=100),
      }, encoders=classification.ENCODERS)
