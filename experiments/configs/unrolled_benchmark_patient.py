"""The unrolled benchmark's patient preset: the papers' stopping rule.

The LISTA-CPSS and ALISTA codes validate every 10 steps and end a phase once
its best validation NMSE is more than 4,000 steps old, any new minimum
counting (`better_wait`, at most 10^6 steps). This preset keeps that rule,
validating every 100 steps (40 validations without a new minimum, no
threshold on the improvement), and caps a phase at 10,000 steps so that one
method fits in a few sessions of two CPU cores (with a 30,000-step cap,
ALISTA's first refinement of stage 3 ran to the cap still setting new
minima, at a pace the sessions could not follow). The long preset waits 500
steps for a 0.1 % improvement and caps a phase at 3,000: the comparison of
the two is the ablation of the budget. Resumed over sessions like the long
preset: every phase checkpoints.

    python experiments/unrolled_benchmark.py \
        --config=experiments/configs/unrolled_benchmark_patient.py \
        --methods=alista,alista_e2e --settings=noiseless
"""

import os
import runpy

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = runpy.run_path(os.path.join(os.path.dirname(__file__),
                                       'unrolled_benchmark_long.py'))[
                                           'get_config']()
  config.preset = 'patient'
  config.note = ("Patient preset (two CPU cores, resumed over sessions): the "
                 "papers' stopping rule, a phase ends once its best "
                 'validation is 4,000 steps old (any new minimum counts), '
                 'at most 10,000 steps.')
  config.patience = 40
  config.min_relative_improvement = 0.0
  config.max_epochs = 100
  return config
