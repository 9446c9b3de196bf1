"""Tables 1-3 on MNIST, the paper's preprocessing read literally.

    python experiments/approximation.py \
        --config=experiments/configs/approximation_paper_literal.py \
        --data_dir=DIR --workdir=results/approximation_paper

No whitening and no calibration: the previous regime, kept for comparison
(results/approximation_paper).
"""

import os
import runpy

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  """The paper preset without its calibrated regime, as it first ran."""
  config = runpy.run_path(os.path.join(os.path.dirname(__file__),
                                       'approximation_paper.py'))[
                                           'get_config']()
  config.calibration = None
  config.previous_results = None
  config.dictionary_steps = 2000
  config.num_epochs = 50
  config.sgd_learning_rates = ()
  config.adam_learning_rates = (1e-3, 1e-4, 1e-5)
  return config
