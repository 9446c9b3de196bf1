"""The solvers benchmark's default problem: 10,000 signals, n = 256, p = 512.

    python experiments/solvers_benchmark.py \
        --config=experiments/configs/solvers_benchmark_default.py \
        --config.num_signals=1000

The fields are those of `solvers_benchmark.Settings` (checked there).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      num_signals=10_000,  # Signals to code.
      signal_dim=256,  # n.
      code_dim=512,  # p, the number of atoms.
      nonzero_prob=0.05,  # Of an entry of the generating codes.
      snr_db=20.0,  # Of the signals D a + noise.
      lam=0.1,  # l1 weight of problem (3).
      m=32,  # Sparsity M of problem (2), at most min(n, p).
      # FISTA counts as matched at a mean objective of at most
      # (1 + match_rtol) times the best scikit-learn one.
      match_rtol=1e-5,
      repeats=3,  # Timed runs of the l0enc solvers after a warm-up.
      seed=0,  # Of the dictionary and the signals.
  ))
