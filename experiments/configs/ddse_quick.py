"""The quick DDSE experiment: two CPU cores, well under an hour.

m = 256 instead of 1024 (the m sweep is 128/256/512 instead of 800..2000),
3 epochs per unit, three points of the s/n and k sweeps and two of ts/t: 40
units, about 16 minutes on two idle cores (extrapolated from measured
units), up to twice that on a busy machine. The default config of
experiments/ddse.py.
"""

from l0enc.experiments import ddse_sweeps


def get_config():
  config = ddse_sweeps.default_config()
  config.preset = 'quick'
  config.code_dim = 256
  config.num_epochs = 3
  config.sweep_values = {'sparsity_ratio': (0.1, 0.25, 0.5),
                         'code_dim': (128, 256, 512),
                         'train_fraction': (0.1, 1.0),
                         'num_stages': (1, 2, 4)}
  config.note = ('Reduced budget (quick preset): a smaller m and fewer sweep '
                 "points than the paper's (m = 1024, m from 800 to 2000, 6-7 "
                 'points per sweep) and few epochs: not converged, not '
                 "comparable to the paper's numbers.")
  return config
