"""Tables 1-3 on the built-in synthetic problem: no download, minutes on CPU.

    python experiments/approximation.py --workdir=results/approximation_quick

The default config of experiments/approximation.py. Its fields are
`l0enc.experiments.approximation.Experiment`'s (which settings run) and
`Config`'s (each setting, but its problem and p); any of them can be changed
on the command line, e.g. `--config.num_epochs=5`.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  """The quick preset."""
  config = ml_collections.ConfigDict()
  # The experiment: every problem at every p.
  config.problems = ('l0', 'msparse')
  config.code_dims = (128,)
  config.calibration = ml_collections.config_dict.placeholder(str)
  config.previous_results = ml_collections.config_dict.placeholder(str)
  # The problem.
  config.dataset = 'synthetic'
  config.lam = 0.05
  config.m = 8
  config.signal_dim = 64
  config.num_train = 20_000
  config.num_test = 2_000
  config.nonzero_prob = 0.05
  config.snr_db = 20.0
  config.codes_tol = 1e-6
  config.codes_max_iterations = 10_000
  config.iht_iterations = (2, 5, 10)
  # MNIST only: the dictionary and the whitening.
  config.dictionary_steps = 2000
  config.dictionary_lam = 1.0
  config.whitening_epsilon = ml_collections.config_dict.placeholder(float)
  # The encoders and their training.
  config.num_stages = 2
  config.tied = True
  config.num_epochs = 30
  config.baseline_epochs = 30
  # The paper's keep probabilities 0.9 / 0.9 / 0.5, one per hidden layer.
  config.baseline_dropout_rates = (0.1, 0.1, 0.5)
  config.batch_size = 128
  config.sgd_learning_rates = ()
  config.adam_learning_rates = (1e-3,)
  config.clip_norm = 1.0
  # HELU_sigma stays at 0.2: on this problem's validation split, annealing
  # it (the paper's schedule) ended worse than keeping it (evaluation uses
  # the exact HELU).
  config.min_sigma = 0.2
  config.validation_fraction = 0.1
  config.seed = 0
  return config
