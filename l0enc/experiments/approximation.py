"""The l0 code-approximation experiment (Tables 1-3 of the l0 paper): settings.

Given a dictionary, the "optimal codes" of problem (1) or (2) (an l1
solution refined by IHT to convergence, `solvers.optimal_codes`) are the
regression targets. Three approximations are compared on held-out signals:
IHT truncated to a few iterations, the baseline fully connected encoder, and
the deep encoder (Deep l0-Regularized or Deep M-Sparse) initialized from the
dictionary (eq. 8) and trained to regress the codes.

This module holds one setting's `Config` (and its form in results files),
and prepares its problem: the signals, the dictionary (learned on MNIST
and cached), the optimal codes (cached in the setting's workdir), the IHT
curve and the untrained deep encoder. `approximation_training.run` trains
and evaluates a setting; `approximation_reports` lays runs out like the
paper's tables.
"""

import dataclasses
import functools
import logging
import os
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
import ml_collections
import numpy as np

from l0enc import data
from l0enc import dictionary as dictionary_lib
from l0enc import metrics
from l0enc import models
from l0enc import reporting
from l0enc import solvers
from l0enc import synthetic
from l0enc import train
from l0enc import validation
from l0enc import whitening
from l0enc.experiments import configs
from l0enc.experiments import units

PROBLEMS = ('l0', 'msparse')
DATASETS = ('synthetic', 'mnist')
CACHE_REMEDY = 'Delete it and rerun: it is a cache the experiment rebuilds.'

DEEP_NAMES = {'l0': 'Deep l0-Regularized encoder',
              'msparse': 'Deep M-Sparse encoder'}


@dataclasses.dataclass(frozen=True)
class Config:
  """One setting of the experiment.

  Attributes:
    dataset: 'synthetic' (built in) or 'mnist'.
    problem: 'l0' (problem 1) or 'msparse' (problem 2).
    code_dim: p, the dictionary size.
    lam: l0 weight of problem (1) in `1/2||x - Da||^2 + lam||a||_0`; the
      paper's lam = 0.5 (in its IHT scaling) is 0.25 here.
    m: M of problem (2).
    num_stages: K, stages of the deep encoder.
    tied: the stages share S and the thresholds (the paper: "shared among
      both stages"); False gives each stage its own (our variant).
    num_epochs: training epochs of the deep encoder.
    baseline_epochs: training epochs of the baseline encoder.
    baseline_dropout_rates: dropout rate after each hidden layer of the
      baseline encoder (`models.MLPEncoder`), one per hidden layer; the
      paper's keep probabilities 0.9 / 0.9 / 0.5 by default.
    batch_size: minibatch size (paper: 128).
    sgd_learning_rates: candidate rates of plain SGD, no momentum (the
      paper's optimizer, at 0.01).
    adam_learning_rates: candidate rates of Adam. Each encoder is trained
      once per candidate (optimizer and rate) and the one with the lowest
      validation prediction error after the last epoch is kept: the
      parameters of the deep encoders have the scale of `mu D^T` and
      `I - mu D^T D`, which shrinks with `mu = 1/||D||^2`, so no single rate
      suits every dictionary.
    clip_norm: gradients are clipped to this global norm first. HELU_sigma
      has slope 1/sigma on its ramps, so as sigma is annealed the rare
      pre-activation that falls on a ramp brings a huge gradient.
    min_sigma: floor of the HELU_sigma annealing (paper: none, i.e. 0); it
      bounds that slope. Evaluation always uses the exact HELU.
    validation_fraction: share of the training signals held out to monitor
      training each epoch; the test set is used once, at the end.
    iht_iterations: the IHT rows of the tables.
    seed: seed of every random choice (data, dictionary, models, order).
    signal_dim: n of the synthetic problem.
    num_train: synthetic training signals.
    num_test: synthetic test signals.
    nonzero_prob: probability of a nonzero in the synthetic codes.
    snr_db: SNR of the synthetic signals.
    data_dir: MNIST directory (mnist.npz or IDX files); None tries
      tensorflow-datasets.
    dictionary_steps: minibatches of MNIST dictionary learning.
    dictionary_lam: l1 weight of the dictionary-learning coding step.
    whitening_epsilon: MNIST only: the regularizer of the ZCA whitening
      (`whitening.fit_zca`) fitted on the training patches and applied to
      every patch after the paper's preprocessing, each patch then
      standardized again (`whitening.whiten_patches`); None for none (the
      paper's literal preprocessing). The paper states neither this nor the
      dictionary settings; `calibration` reconstructs them from its IHT rows.
    tight_frame: MNIST only: replace the learned dictionary by the nearest
      unit-norm tight frame (`dictionary.tight_frame`), so that
      `||D||_2^2 = p/n`; another of the settings `calibration` chooses (our
      reconstruction: the paper says nothing of its dictionary's
      conditioning, and its IHT rows barely change from p = 128 to 512).
    codes_tol: tolerance of `optimal_codes` (both phases).
    codes_max_iterations: iteration cap of each phase of `optimal_codes`.
  """
  dataset: str = 'synthetic'
  problem: str = 'l0'
  code_dim: int = 128
  lam: float = 0.05
  m: int = 8
  num_stages: int = 2
  tied: bool = True
  num_epochs: int = 20
  baseline_epochs: int = 20
  baseline_dropout_rates: tuple[float, ...] = (0.1, 0.1, 0.5)
  batch_size: int = 128
  sgd_learning_rates: tuple[float, ...] = ()
  adam_learning_rates: tuple[float, ...] = (0.001,)
  clip_norm: float = 1.0
  min_sigma: float = 0.01
  validation_fraction: float = 0.1
  iht_iterations: tuple[int, ...] = (2, 5, 10)
  seed: int = 0
  signal_dim: int = 64
  num_train: int = 20_000
  num_test: int = 2_000
  nonzero_prob: float = 0.05
  snr_db: float = 20.0
  data_dir: str | None = None
  dictionary_steps: int = 2_000
  dictionary_lam: float = 1.0
  codes_tol: float = 1e-6
  codes_max_iterations: int = 10_000
  whitening_epsilon: float | None = None
  tight_frame: bool = False

  def __post_init__(self):
    if self.dataset not in DATASETS:
      raise ValueError(f'dataset must be one of {DATASETS}, got '
                       f'{self.dataset!r}.')
    if self.problem not in PROBLEMS:
      raise ValueError(f'problem must be one of {PROBLEMS}, got '
                       f'{self.problem!r}.')
    validation.check_int_in_range('code_dim', self.code_dim, 1, 2**31 - 1)
    validation.check_positive('lam', self.lam)
    validation.check_int_in_range(f'm (at most code_dim={self.code_dim})',
                                  self.m, 1, self.code_dim)
    validation.check_int_in_range('num_stages', self.num_stages, 1, 64)
    if not self.candidates:
      raise ValueError('sgd_learning_rates and adam_learning_rates must hold '
                       'at least one rate between them.')
    for optimizer, learning_rate in self.candidates:
      validation.check_positive(f'{optimizer}_learning_rates', learning_rate)
    if self.whitening_epsilon is not None:
      if self.dataset != 'mnist':
        raise ValueError('whitening_epsilon applies to MNIST only (the '
                         'synthetic signals are made from a known '
                         f'dictionary), got dataset={self.dataset!r}.')
      validation.check_positive('whitening_epsilon', self.whitening_epsilon)
    if not isinstance(self.tight_frame, bool):
      raise ValueError(f'tight_frame must be True or False, got '
                       f'{self.tight_frame!r}.')
    if self.tight_frame and self.dataset != 'mnist':
      raise ValueError('tight_frame applies to MNIST only (the synthetic '
                       'codes refer to their generating dictionary), got '
                       f'dataset={self.dataset!r}.')
    if not self.baseline_dropout_rates:
      raise ValueError('baseline_dropout_rates must hold one rate per hidden '
                       'layer of the baseline encoder, got none.')
    for rate in self.baseline_dropout_rates:
      if not 0 <= rate < 1:
        raise ValueError(f'baseline_dropout_rates must be in [0, 1), got '
                         f'{self.baseline_dropout_rates!r}.')
    validation.check_positive('clip_norm', self.clip_norm)
    if not 0 < self.validation_fraction < 1:
      raise ValueError('validation_fraction must be in (0, 1), got '
                       f'{self.validation_fraction}.')
    # Checked here, before the optimal codes and the baseline are computed:
    # the training settings are otherwise only read by `train.fit`.
    big = 2**31 - 1
    for name in ('num_epochs', 'baseline_epochs', 'batch_size',
                 'dictionary_steps', 'codes_max_iterations', 'signal_dim',
                 'num_test'):
      validation.check_int_in_range(name, getattr(self, name), 1, big)
    validation.check_int_in_range('num_train', self.num_train, 2, big)
    validation.check_int_in_range('seed', self.seed, 0, big)
    initial_sigma = train.TrainConfig().initial_sigma
    validation.check_nonnegative('min_sigma', self.min_sigma)
    if self.min_sigma > initial_sigma:
      raise ValueError(f'min_sigma must be in [0, {initial_sigma:g}] (the '
                       f'initial HELU sigma), got {self.min_sigma}.')
    if not self.iht_iterations:
      raise ValueError('iht_iterations must hold at least one count.')
    for iterations in self.iht_iterations:
      validation.check_int_in_range('iht_iterations', iterations, 1, big)
    if not 0 < self.nonzero_prob <= 1:
      raise ValueError(f'nonzero_prob must be in (0, 1], got '
                       f'{self.nonzero_prob}.')
    validation.check_finite('snr_db', self.snr_db)
    validation.check_positive('dictionary_lam', self.dictionary_lam)
    validation.check_positive('codes_tol', self.codes_tol)
    if self.dataset == 'synthetic':
      num_fit = self.num_train - int(self.num_train *
                                     self.validation_fraction)
      if self.batch_size > num_fit:
        raise ValueError(
            f'batch_size={self.batch_size} exceeds the {num_fit} training '
            'signals left after the validation split (num_train='
            f'{self.num_train}).')

  @property
  def candidates(self) -> tuple[tuple[str, float], ...]:
    """The (optimizer, learning rate) pairs each encoder is trained with."""
    return (tuple(('sgd', rate) for rate in self.sgd_learning_rates) +
            tuple(('adam', rate) for rate in self.adam_learning_rates))

  @property
  def problem_kwargs(self) -> dict[str, Any]:
    return {'lam': self.lam} if self.problem == 'l0' else {'m': self.m}


@dataclasses.dataclass(frozen=True)
class Experiment:
  """Which settings an experiment runs, and the results files it reads.

  An experiment's config (`experiments/configs/approximation_<preset>.py`)
  holds these fields beside the fields of its `Config`s.

  Attributes:
    problems: the problems run at every code size.
    code_dims: the code sizes p.
    calibration: results.json of experiments/calibrate_regime.py, whose
      chosen whitening regularizer and dictionary l1 weight at each p
      replace the config's; None (or '', as a command line gives it) for
      none.
    previous_results: results.json of another regime, reported below this
      one's tables for comparison; None or '' for none.
  """
  problems: tuple[str, ...] = PROBLEMS
  code_dims: tuple[int, ...] = (128,)
  calibration: str | None = None
  previous_results: str | None = None

  def __post_init__(self):
    if not self.problems or not set(self.problems) <= set(PROBLEMS):
      raise ValueError(f'problems must be among {PROBLEMS}, got '
                       f'{self.problems!r}.')
    if not self.code_dims:
      raise ValueError('code_dims must hold at least one code size.')
    for name in ('calibration', 'previous_results'):
      path = getattr(self, name)
      if path and not os.path.isfile(path):
        raise ValueError(f'{name} must name an existing results.json, got '
                         f'{path!r}.')


EXPERIMENT_FIELDS = tuple(field.name for field in dataclasses.fields(
    Experiment))


def experiment_settings(
    config: ml_collections.ConfigDict | Mapping[str, Any], *,
    read_regimes: Callable[[str], Mapping[int, Mapping[str, Any]]] | None = (
        None),
    **overrides: Any) -> tuple[Experiment, list[Config]]:
  """The experiment and its settings (one per problem and p) of a config.

  Args:
    config: an experiment config: `Experiment`'s fields and `Config`'s
      (but `problem` and `code_dim`, which the experiment varies).
    read_regimes: reads the experiment's `calibration` file as `{p: Config
      fields}` that replace the config's at each p (the calibrated regime:
      `calibration.read_choice`); it must hold every p the experiment runs.
      Needed only when the config names a calibration.
    **overrides: fields of either, set after the config's (e.g. `data_dir`,
      or `code_dims` from a command-line selection).

  Returns:
    `(experiment, settings)`, every setting built, hence checked.

  Raises:
    ValueError: a field is unknown or has a bad value (the message names
      it), or the calibration has no regime for a p.
  """
  fields = (config.to_dict() if isinstance(config, ml_collections.ConfigDict)
            else dict(config))
  fields.update(overrides)
  experiment = configs.to_settings(
      Experiment, {name: fields.pop(name) for name in EXPERIMENT_FIELDS
                   if name in fields})
  regimes = None
  if experiment.calibration:
    if read_regimes is None:
      raise ValueError(f'calibration={experiment.calibration!r} needs '
                       'read_regimes to read it.')
    regimes = read_regimes(experiment.calibration)
  settings = []
  for code_dim in experiment.code_dims:
    if regimes is not None and code_dim not in regimes:
      raise ValueError(f'calibration={experiment.calibration} holds no choice '
                       f'for p = {code_dim} (it has {sorted(regimes)}); run '
                       'experiments/calibrate_regime.py for it first.')
    regime = {} if regimes is None else regimes[code_dim]
    settings += [configs.to_settings(Config, fields, problem=problem,
                                     code_dim=code_dim, **regime)
                 for problem in experiment.problems]
  return experiment, settings


class Problem(NamedTuple):
  """Signals, dictionary and optimal codes of one setting (NumPy arrays)."""
  dictionary: np.ndarray
  x_train: np.ndarray
  codes_train: np.ndarray
  x_test: np.ndarray
  codes_test: np.ndarray


def dictionary_cache_path(config: Config, dictionary_dir: str) -> str:
  """Where the MNIST dictionary (and whitening) of `config` is cached.

  The name holds every setting the dictionary depends on, so problems (1)
  and (2), and the calibration and the experiment, share it.
  """
  name = (f'mnist_p{config.code_dim}_lam{config.dictionary_lam:g}_'
          f'steps{config.dictionary_steps}_seed{config.seed}')
  if config.whitening_epsilon is None:
    return os.path.join(dictionary_dir, name + '.npy')
  return os.path.join(dictionary_dir,
                      f'{name}_zca{config.whitening_epsilon:g}.npz')


def load_signals(config: Config, dictionary_dir: str | None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(train signals, test signals, dictionary) of the configured dataset.

  A learned dictionary is cached in `dictionary_dir` (if given) at
  `dictionary_cache_path`; with whitening, the fitted whitening is stored in
  the same file, beside the dictionary learned on the whitened patches.
  With `config.tight_frame` the dictionary returned is the learned one's
  nearest tight frame (the cache holds the learned one).
  """
  key = jax.random.PRNGKey(config.seed)
  if config.dataset == 'synthetic':
    # The generating dictionary is known: it is the one the codes refer to.
    generated = synthetic.make_synthetic(
        key, config.num_train + config.num_test,
        signal_dim=config.signal_dim, code_dim=config.code_dim,
        nonzero_prob=config.nonzero_prob, snr_db=config.snr_db)
    signals = np.asarray(generated.signals)
    return (signals[:config.num_train], signals[config.num_train:],
            np.asarray(generated.dictionary))
  x_train, x_test = mnist_patches(config.data_dir)
  if config.whitening_epsilon is not None:
    # Fitted on the training patches only; the same map for the test set.
    zca = whitening.fit_zca(x_train, config.whitening_epsilon)
    x_train, x_test = (whitening.whiten_patches(zca, x).astype(np.float32)
                       for x in (x_train, x_test))
  path = dictionary_dir and dictionary_cache_path(config, dictionary_dir)
  if path and os.path.exists(path):
    if config.whitening_epsilon is None:
      with validation.reading(path, CACHE_REMEDY):
        dictionary = np.load(path, allow_pickle=False)
    else:
      dictionary = validation.load_npz(path, CACHE_REMEDY)['dictionary']
    return x_train, x_test, _conditioned(dictionary, config)
  dictionary = np.asarray(dictionary_lib.learn_dictionary(
      jax.random.fold_in(key, 1), jnp.asarray(x_train), config.code_dim,
      lam=config.dictionary_lam, num_steps=config.dictionary_steps,
      log_every=max(config.dictionary_steps // 10, 1)).dictionary)
  if path:
    os.makedirs(dictionary_dir, exist_ok=True)
    if config.whitening_epsilon is None:
      reporting.save_npy_atomic(path, dictionary)
    else:
      reporting.save_npz_atomic(path, dictionary=dictionary,
                                whitening_mean=zca.mean,
                                whitening_transform=zca.transform)
  return x_train, x_test, _conditioned(dictionary, config)


def _conditioned(dictionary: np.ndarray, config: Config) -> np.ndarray:
  """The learned dictionary, made a tight frame if the config says so.

  Applied after the cache, which holds the learned dictionary: both
  readings of a setting share one dictionary learning.
  """
  if not config.tight_frame:
    return dictionary
  return np.asarray(dictionary_lib.tight_frame(dictionary))


@functools.cache
def mnist_patches(data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
  """MNIST's train and test images, preprocessed (read-only, cached).

  Loaded and preprocessed once per process: every setting of a run (and of
  the encoding benchmark) uses the same patches.
  """
  split = data.load_mnist(data_dir)
  patches = tuple(data.preprocess_patches(images).patches
                  for images in (split.x_train, split.x_test))
  for array in patches:
    array.setflags(write=False)
  logging.info('MNIST: %d train and %d test patches of dimension %d.',
               len(patches[0]), len(patches[1]), patches[0].shape[1])
  return patches


def optimal_codes_in_chunks(signals: np.ndarray, dictionary: np.ndarray,
                            config: Config,
                            chunk_size: int = 10_000) -> np.ndarray:
  """`solvers.optimal_codes` over a large set, a chunk at a time, logged."""
  codes = []
  for start in range(0, len(signals), chunk_size):
    result = solvers.optimal_codes(
        jnp.asarray(signals[start:start + chunk_size]),
        jnp.asarray(dictionary), tol=config.codes_tol,
        max_iterations=config.codes_max_iterations, **config.problem_kwargs)
    codes.append(np.asarray(result.codes))
    logging.info('optimal codes: %d/%d signals, up to %d IHT iterations, '
                 'mean objective %.5g', min(start + chunk_size, len(signals)),
                 len(signals), int(result.num_iterations.max()),
                 float(result.objective.mean()))
  return np.concatenate(codes)


def prepare_problem(config: Config, workdir: str,
                    dictionary_dir: str | None = None) -> Problem:
  """The signals, dictionary and optimal codes, cached in `workdir`."""
  path = os.path.join(workdir, 'problem.npz')
  if os.path.exists(path):
    cached = validation.load_npz(path, CACHE_REMEDY)
    logging.info('Loaded the problem from %s.', path)
    return Problem(**{name: cached[name] for name in Problem._fields})
  x_train, x_test, dictionary = load_signals(config, dictionary_dir)
  problem = Problem(dictionary, x_train,
                    optimal_codes_in_chunks(x_train, dictionary, config),
                    x_test, optimal_codes_in_chunks(x_test, dictionary, config))
  os.makedirs(workdir, exist_ok=True)
  reporting.save_npz_atomic(path, **problem._asdict())
  return problem


def code_metrics(predicted, target) -> dict[str, float]:
  return {'prediction_error': float(metrics.prediction_error(predicted,
                                                             target)),
          'support_error': float(metrics.support_error(predicted, target)),
          'nmse_db': float(metrics.nmse_db(predicted, target))}


def iht_curve(x: np.ndarray, dictionary: np.ndarray, target: np.ndarray,
              config: Config, max_iterations: int, *,
              solver: Callable[..., solvers.SolverResult] = solvers.iht,
              init: np.ndarray | None = None) -> list[dict[str, float]]:
  """Metrics of IHT from zero (or `init`) after 1, ..., max_iterations steps.

  Args:
    x: signals, shape `(N, n)`.
    dictionary: shape `(n, p)`.
    target: their optimal codes, shape `(N, p)`.
    config: the setting (its problem and l0 weight or sparsity).
    max_iterations: the last iteration count.
    solver: `solvers.iht` or `adaptive_solvers.normalized_iht`.
    init: the codes IHT starts from, shape `(N, p)`; zeros when None.

  Returns:
    The `_code_metrics` after each iteration.
  """
  x, dictionary = jnp.asarray(x), jnp.asarray(dictionary)
  codes = (jnp.zeros((len(x), dictionary.shape[1]), x.dtype) if init is None
           else jnp.asarray(init, x.dtype))
  curve = []
  for _ in range(max_iterations):
    # One step at a time from the previous codes: one compilation in all.
    codes = solver(x, dictionary, num_iterations=1, init=codes,
                   **config.problem_kwargs).codes
    curve.append(code_metrics(codes, target))
  return curve


def build_deep_encoder(dictionary: np.ndarray, config: Config) -> nnx.Module:
  """The deep encoder of the problem, initialized from the dictionary (eq. 8)."""
  dictionary = jnp.asarray(dictionary)
  if config.problem == 'l0':
    return models.DeepL0Encoder.from_dictionary(
        dictionary, lam=config.lam, num_stages=config.num_stages,
        tied=config.tied)
  return models.DeepMSparseEncoder.from_dictionary(
      dictionary, m=config.m, num_stages=config.num_stages, tied=config.tied)


def build_baseline_encoder(signal_dim: int, config: Config) -> nnx.Module:
  """The paper's baseline: a fully connected ReLU network, randomly
  initialized from the seed, one hidden layer of width p per dropout rate."""
  return models.MLPEncoder(signal_dim, config.code_dim,
                           dropout_rates=config.baseline_dropout_rates,
                           rngs=nnx.Rngs(config.seed))


def split_indices(config: Config,
                  num_train: int) -> tuple[np.ndarray, np.ndarray]:
  """(fit, validation) indices of the training signals, from the seed.

  The validation share (`config.validation_fraction`) monitors and selects
  the trained encoders, and `calibration` scores its settings on it.
  """
  num_validation = int(num_train * config.validation_fraction)
  order = np.random.default_rng(config.seed).permutation(num_train)
  return order[num_validation:], order[:num_validation]


def config_to_json(config: Config) -> dict[str, Any]:
  """The config as a results file holds it (tuples as lists)."""
  return units.as_json(dataclasses.asdict(config))


def config_from_json(fields: dict[str, Any], **overrides: Any) -> Config:
  """The `Config` of a results file (lists back to tuples).

  Results written before SGD and Adam were separate candidate lists hold
  one `optimizer` and its `learning_rates`; they are read as that
  optimizer's candidates alone.
  """
  fields = {name: tuple(value) if isinstance(value, list) else value
            for name, value in fields.items()}
  if 'optimizer' in fields:
    optimizer = fields.pop('optimizer')
    rates = fields.pop('learning_rates')
    fields['sgd_learning_rates'] = rates if optimizer == 'sgd' else ()
    fields['adam_learning_rates'] = rates if optimizer == 'adam' else ()
  return Config(**{**fields, **overrides})


def upgrade_config(fields: dict[str, Any]) -> dict[str, Any]:
  """A saved config in today's form (`units.run_unit`'s `upgrade`).

  Older layouts are converted (`config_from_json`) and fields added since
  take their defaults, so that results files of earlier versions read back.
  """
  return config_to_json(config_from_json(fields))
