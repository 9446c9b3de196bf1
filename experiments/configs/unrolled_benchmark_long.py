"""The unrolled benchmark's long preset: the ALISTA forms on the CPU, resumed.

The paper preset (`unrolled_benchmark_paper.py`) with longer phases: a
validation every 100 steps, a plateau after 5 without a 0.1 % improvement
(500 steps; the papers wait 4,000), at most 30 per phase (3,000 steps),
and one compiled step per stage (stage t runs stages 1..t only). Meant for
the methods whose steps are cheap on two CPU cores (the ALISTA forms: a few
parameters per stage), run over several sessions: every phase checkpoints
and a restarted run continues where it stopped.

    python experiments/unrolled_benchmark.py \
        --config=experiments/configs/unrolled_benchmark_long.py \
        --methods=alista,alista_l0 --settings=noiseless
"""

import os
import runpy

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = runpy.run_path(os.path.join(os.path.dirname(__file__),
                                       'unrolled_benchmark_paper.py'))[
                                           'get_config']()
  config.preset = 'long'
  config.note = ('Long preset (two CPU cores, resumed over sessions): '
                 'phases end after 500 steps without a 0.1 % improvement '
                 '(the papers wait 4,000) or at 3,000 steps.')
  config.steps_per_epoch = 100
  config.patience = 5
  config.max_epochs = 30
  config.compile_per_stage = True
  return config
