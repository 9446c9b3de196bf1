"""The DDSE paper's Sec. 4.2 in full, for a GPU.

m = 1024 and the figures' sweep ranges (7 points each, k = 1..6), 40
epochs per unit with plateau decay of the learning rate: 120 units, about
25 minutes on one H100 as eight shards at once (--num_shards;
results/ddse_paper/ holds each unit's train_seconds).

    python experiments/ddse.py --config=experiments/configs/ddse_paper.py
"""

from l0enc.experiments import ddse_sweeps


def get_config():
  config = ddse_sweeps.default_config()  # The paper's defaults and sweeps.
  config.preset = 'paper'
  config.num_epochs = 40
  config.note = ("The paper's defaults and sweep ranges (ticks between the "
                 "paper's end points are ours).")
  return config
