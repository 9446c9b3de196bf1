"""The unrolled benchmark's paper preset: the papers' phases, for one GPU.

The quick preset (`unrolled_benchmark_quick.py`) with the papers' phases
(x0.2 and x0.02), a validation every 50 steps, a plateau after two without
improvement, at most 10 per phase and 1,000 validation signals; meant for
about 10 minutes on one GPU (an estimate: it has not run on a GPU yet).

    python experiments/unrolled_benchmark.py \
        --config=experiments/configs/unrolled_benchmark_paper.py
"""

import importlib.util
import os

import ml_collections


def _quick() -> ml_collections.ConfigDict:
  # Loaded by path: config_flags loads this file by path, not as a package.
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                      'unrolled_benchmark_quick.py')
  spec = importlib.util.spec_from_file_location('unrolled_benchmark_quick',
                                                path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def get_config() -> ml_collections.ConfigDict:
  config = _quick()
  config.preset = 'paper'
  config.note = ("Paper preset: the papers' phases (x0.2, x0.02) with "
                 'shorter plateaus, for one GPU.')
  config.steps_per_epoch = 50
  config.patience = 2
  config.max_epochs = 10
  config.refine_decays = (0.2, 0.02)
  config.num_validation = 1000
  return config
