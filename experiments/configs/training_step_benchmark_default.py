"""The training step benchmark's default sizes: 250 x 500, 16-stage encoders.

    python experiments/training_step_benchmark.py \
        --config=experiments/configs/training_step_benchmark_default.py \
        --config.runs=1 --config.repeats=3

The fields are those of `training_step_benchmark.Settings` (checked there).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      signal_dim=250,  # n of the encoders.
      code_dim=500,  # p of the encoders.
      num_stages=16,  # Unrolled stages K.
      batch_size=64,  # Signals per training step.
      m=50,  # M of the Deep M-Sparse encoder.
      scan_steps=20,  # Steps per call of train.train_steps (one lax.scan).
      top_m_rows=10_000,  # Rows of the top_m benchmark.
      top_m_dim=512,  # Their length p, and the size of the square matmul.
      top_m_m=32,  # M of the top_m benchmark.
      repeats=15,  # Rounds of timed calls after a warm-up call.
      runs=3,  # Times the whole measurement is repeated.
      seed=0,  # Of the weights and the data.
  ))
