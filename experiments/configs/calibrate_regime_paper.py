"""The calibration grid of Tables 1-3 (the default of calibrate_regime.py).

    python experiments/calibrate_regime.py --data_dir=DIR \
        --workdir=results/approximation_calibration --p=128 \
        --config.whitening_epsilons='(0.03, 0.1, 0.3)'

The committed grid (results/approximation_calibration/) was run one p at
a time: p = 128 as above; p = 256 with whitening_epsilons (0.01, 0.03, 0.1,
0.3) at l1 weight 0.5 and (0.01,) at 0.1 and 0.25; p = 512 with

    --p=512 --config.whitening_epsilons='(0.01,)' \
        --config.dictionary_lams='(0.1, 0.25, 0.5)' \
        --config.tight_frames='(False, True)'

(tight frames only where p > n = 256: below, they are orthonormal).
Its fields are `l0enc.experiments.calibration.Grid`'s; the problem's
settings (lam, m, the dictionary's steps) are those of
approximation_paper.py.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  """The grid of ZCA regularizers and dictionary l1 weights."""
  config = ml_collections.ConfigDict()
  config.whitening_epsilons = (0.03, 0.1, 0.3)
  config.dictionary_lams = (0.5, 1.0)
  config.tight_frames = (False,)
  config.dictionary_steps = 600
  config.num_signals = 5000
  config.lam = 0.25
  config.m = 32
  config.seed = 0
  config.literal_results = 'results/approximation_paper/results.json'
  return config
