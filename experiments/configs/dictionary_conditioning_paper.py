"""The conditioning diagnostic's settings (its default config).

    python experiments/dictionary_conditioning.py --data_dir=DIR \
        --workdir=results/dictionary_conditioning

Its fields are `l0enc.experiments.dictionary_conditioning.Settings`'s: the
literal regime's dictionary (results/approximation_paper) at p = 128.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  """p = 128, 2000 steps of dictionary learning, problem (1) at lam = 0.25."""
  config = ml_collections.ConfigDict()
  config.code_dim = 128
  config.lam = 0.25
  config.dictionary_lam = 1.0
  config.dictionary_steps = 2000
  config.num_train = 20_000
  config.num_test = 2_000
  config.seed = 0
  return config
