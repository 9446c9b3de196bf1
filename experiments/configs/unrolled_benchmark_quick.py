"""The unrolled benchmark's quick preset: two shared CPU cores, ~40 minutes.

Short phases (a validation every 25 steps, a plateau after one without
improvement, at most 3 per phase), one refinement rate (x0.2) instead of two,
250 validation signals: 50-75 steps per phase, about 2,000 per method. Far
from converged: the papers train each phase until 4,000 steps pass without
improvement.

    python experiments/unrolled_benchmark.py \
        --config=experiments/configs/unrolled_benchmark_quick.py \
        --config.num_stages=8

The fields are those of `unrolled_benchmark.Settings` (checked there);
`unrolled_benchmark_paper.py` starts from this file.
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      preset='quick',  # Names the report and the default directories.
      note=('Quick preset (two CPU cores): short phases and one refinement '
            "rate; far from the papers' budget (phases end after 4,000 "
            'steps without improvement), so not converged.'),
      # The problem (the LISTA-CPSS and ALISTA papers' 250 x 500).
      num_stages=16,  # Stages (iterations) of every method.
      signal_dim=250,  # n.
      code_dim=500,  # p.
      nonzero_prob=0.1,  # Of a code entry.
      num_test=1000,  # Fixed test codes.
      num_validation=250,  # Fixed validation codes.
      seed=0,  # Of the matrix, the stream and the sets.
      # Training ('stagewise', the papers' recipe, or 'end_to_end').
      training='stagewise',
      batch_size=64,  # The papers' 64.
      learning_rate=5e-4,  # Base Adam rate (the papers').
      # Base rate of the end-to-end phases of the fine-tuned variants
      # (<method>_e2e, ours), relative to each parameter's size: chosen on
      # the validation set in trial runs from ALISTA's long-preset unit
      # among 3e-3, 1e-2 and 3e-2 (absolute steps: 1e-2 diverged, 3e-3
      # was below every relative rate but 3e-2, 1e-4 barely moved it).
      end_to_end_rate=1e-2,
      refine_decays=(0.2,),  # Refinement rates, multiples of the base.
      stage_decay=0.3,  # Earlier stages' rates, after each stage.
      # Where stage_decay acts: 'rate' (the steps, the literal reading) or
      # 'gradient' (the gradients Adam sees, as the papers' codes do).
      stage_decay_target='rate',
      # Adam's epsilon on our loss, the batch mean (the codes' 1e-8 on their
      # half batch sum is 1e-8 / (batch_size / 2) here).
      adam_eps=1e-8,
      steps_per_epoch=25,  # Steps between validations.
      patience=1,  # Validations without improvement that end a phase.
      # Smaller improvements, as a fraction of the phase's best validation
      # loss, do not count (the papers' codes: 0, any new minimum).
      min_relative_improvement=1e-3,
      max_epochs=3,  # Most validations per phase.
      # Most validations per end-to-end phase of the fine-tuned variants
      # (ours); None: max_epochs.
      end_to_end_max_epochs=config_dict.placeholder(int),
      # Whether the end-to-end phases end at their best validation epoch
      # (ours); None: restore_best.
      end_to_end_restore_best=config_dict.placeholder(bool),
      # One compiled step per stage, stages 1..t only (for long phases).
      compile_per_stage=False,
      # Where a new stage starts: 'as_built' (the papers': one more ISTA/IHT
      # step) or 'previous_stage' (ours: a copy of the trained stage before).
      new_stage_init='as_built',
      # End each phase at its best validation epoch (ours) or its last (the
      # papers').
      restore_best=False,
      # Stage-wise updates scaled by the size of what they update (ours:
      # learning_rate is then a fraction of each parameter) or absolute (the
      # papers').
      relative_steps=False,
      # l0 weight that initializes the Deep l0 thresholds; None: the one IHT
      # chose on validation (deep_l0), the best on validation of the
      # untrained encoder (alista_l0).
      l0_lam=config_dict.placeholder(float),
      # Cap of support selection's p_k, in percent of p (the papers' 13 %:
      # 65 entries, 2.3 sigma above the 50 nonzeros of a Bernoulli(0.1) code).
      max_support_percent=13.0,
      max_m=100,  # Largest M of the M-sparse encoders.
      m_growth=12,  # M of stage k: min(k * m_growth, max_m).
      fista_max_iterations=20000,  # Cap of converged FISTA.
  ))
