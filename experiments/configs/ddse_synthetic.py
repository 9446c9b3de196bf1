"""A smoke test of the DDSE pipeline on tiny built-in images (no data).

8 x 8 synthetic images of 4 classes, baseline I and DDSE, m = 32, 2 epochs
per unit, two points of the ts/t sweep: 4 units, a minute or two on a CPU.

    python experiments/ddse.py --config=experiments/configs/ddse_synthetic.py
"""

from l0enc.experiments import ddse_sweeps


def get_config():
  config = ddse_sweeps.default_config()
  config.preset = 'synthetic'
  config.dataset = 'synthetic'
  config.validation_size = 200  # Of the 1200 synthetic training images.
  config.methods = ('fc', 'ddse')
  config.code_dim = 32
  config.num_epochs = 2
  config.sweeps = ('train_fraction',)
  config.sweep_values.train_fraction = (0.5, 1.0)
  config.note = 'Smoke test on synthetic images: not an experiment.'
  return config
