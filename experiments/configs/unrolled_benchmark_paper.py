"""The unrolled benchmark's paper preset: the papers' phases, for one GPU.

The quick preset (`unrolled_benchmark_quick.py`) with the papers' phases
(x0.2 and x0.02), a validation every 50 steps, a plateau after two without
improvement, at most 10 per phase and 1,000 validation signals; meant for
about 10 minutes on one GPU (an estimate: it has not run on a GPU yet).

    python experiments/unrolled_benchmark.py \
        --config=experiments/configs/unrolled_benchmark_paper.py
"""

import os
import runpy

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = runpy.run_path(os.path.join(os.path.dirname(__file__),
                                       'unrolled_benchmark_quick.py'))[
                                           'get_config']()
  config.preset = 'paper'
  config.note = ("Paper preset: the papers' phases (x0.2, x0.02) with "
                 'shorter plateaus, for one GPU.')
  config.steps_per_epoch = 50
  config.patience = 2
  config.max_epochs = 10
  config.refine_decays = (0.2, 0.02)
  config.num_validation = 1000
  return config
