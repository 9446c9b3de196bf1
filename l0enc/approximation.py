"""The l0 code-approximation experiment (Tables 1-3 of the l0 paper).

Given a dictionary, the "optimal codes" of problem (1) or (2) (an l1
solution refined by IHT to convergence, `solvers.optimal_codes`) are the
regression targets. Three approximations are compared on held-out signals:
IHT truncated to a few iterations, the baseline fully connected encoder, and
the deep encoder (Deep l0-Regularized or Deep M-Sparse) initialized from the
dictionary (eq. 8) and trained to regress the codes.

`run(config, workdir)` does one (dataset, problem, p) setting and caches every
expensive intermediate in `workdir` (the preprocessed problem with its codes,
the training checkpoints, the results), so a killed run resumes where it
stopped. `paper_tables` lays several runs out like the paper's tables.
"""

import dataclasses
import functools
import logging
import os
import statistics
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
import numpy as np

from l0enc import adaptive_solvers
from l0enc import checkpoint
from l0enc import data
from l0enc import dictionary as dictionary_lib
from l0enc import divergence
from l0enc import metrics
from l0enc import models
from l0enc import reporting
from l0enc import solvers
from l0enc import synthetic
from l0enc import train
from l0enc import validation
from l0enc import whitening

PROBLEMS = ('l0', 'msparse')
DATASETS = ('synthetic', 'mnist')
SPEED_REPEATS = 20  # Timed runs of the encoding benchmark (the median is kept).
_CACHE_REMEDY = 'Delete it and rerun: it is a cache the experiment rebuilds.'

# The paper's Tables 1-3 (Wang et al., AAAI 2016), p = 128 / 256 / 512.
PAPER_TABLES = {
    'l0': {
        'IHT (2 iterations)': (17.52, 18.73, 22.40),
        'IHT (5 iterations)': (8.14, 6.75, 9.37),
        'IHT (10 iterations)': (3.55, 4.33, 4.08),
        'Baseline encoder': (8.94, 8.76, 10.17),
        'Deep l0-Regularized encoder': (0.92, 0.91, 0.81),
    },
    'msparse': {
        'IHT (2 iterations)': (17.23, 19.27, 19.31),
        'IHT (5 iterations)': (10.84, 12.52, 12.40),
        'IHT (10 iterations)': (5.67, 5.44, 5.20),
        'Baseline encoder': (14.04, 16.76, 12.86),
        'Deep M-Sparse encoder': (2.94, 2.87, 3.29),
    },
    'support': {
        'IHT (2 iterations)': (10.8, 13.4, 13.2),
        'IHT (5 iterations)': (6.1, 8.0, 8.8),
        'IHT (10 iterations)': (4.6, 5.6, 5.3),
        'Deep M-Sparse encoder': (2.2, 2.7, 2.7),
    },
}
PAPER_CODE_DIMS = (128, 256, 512)
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
      with validation.reading(path, _CACHE_REMEDY):
        return x_train, x_test, np.load(path, allow_pickle=False)
    return x_train, x_test, validation.load_npz(path, _CACHE_REMEDY)[
        'dictionary']
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
  return x_train, x_test, dictionary


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
    cached = validation.load_npz(path, _CACHE_REMEDY)
    logging.info('Loaded the problem from %s.', path)
    return Problem(**{name: cached[name] for name in Problem._fields})
  x_train, x_test, dictionary = load_signals(config, dictionary_dir)
  problem = Problem(dictionary, x_train,
                    optimal_codes_in_chunks(x_train, dictionary, config),
                    x_test, optimal_codes_in_chunks(x_test, dictionary, config))
  os.makedirs(workdir, exist_ok=True)
  reporting.save_npz_atomic(path, **problem._asdict())
  return problem


def _code_metrics(predicted, target) -> dict[str, float]:
  return {'prediction_error': float(metrics.prediction_error(predicted,
                                                             target)),
          'support_error': float(metrics.support_error(predicted, target)),
          'nmse_db': float(metrics.nmse_db(predicted, target))}


def _metric_fn(outputs, targets):
  return {'prediction_error': metrics.prediction_error(outputs, targets)}


def iht_curve(x: np.ndarray, dictionary: np.ndarray, target: np.ndarray,
              config: Config, max_iterations: int, *,
              solver: Callable[..., solvers.SolverResult] = solvers.iht
              ) -> list[dict[str, float]]:
  """Metrics of IHT from zero after 1, 2, ..., max_iterations steps.

  Args:
    x: signals, shape `(N, n)`.
    dictionary: shape `(n, p)`.
    target: their optimal codes, shape `(N, p)`.
    config: the setting (its problem and l0 weight or sparsity).
    max_iterations: the last iteration count.
    solver: `solvers.iht` or `adaptive_solvers.normalized_iht`.

  Returns:
    The `_code_metrics` after each iteration.
  """
  x, dictionary = jnp.asarray(x), jnp.asarray(dictionary)
  codes = jnp.zeros((len(x), dictionary.shape[1]), x.dtype)
  curve = []
  for _ in range(max_iterations):
    # One step at a time from the previous codes: one compilation in all.
    codes = solver(x, dictionary, num_iterations=1, init=codes,
                   **config.problem_kwargs).codes
    curve.append(_code_metrics(codes, target))
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


def _fit_options(config: Config, num_epochs: int, optimizer: str,
                 learning_rate: float) -> dict[str, Any]:
  """`train.fit`'s `config` and `tx` for the encoders of this experiment."""
  return dict(
      config=train.TrainConfig(num_epochs=num_epochs,
                               batch_size=config.batch_size,
                               min_sigma=config.min_sigma),
      tx=train.make_optimizer(optimizer, learning_rate,
                              clip_norm=config.clip_norm))


def candidate_name(optimizer: str, learning_rate: float) -> str:
  """`'adam_lr0.001'`: the checkpoint directory and label of a candidate."""
  return f'{optimizer}_lr{learning_rate:g}'


def split_indices(config: Config,
                  num_train: int) -> tuple[np.ndarray, np.ndarray]:
  """(fit, validation) indices of the training signals, from the seed.

  The validation share (`config.validation_fraction`) monitors and selects
  the trained encoders, and `calibration` scores its settings on it.
  """
  num_validation = int(num_train * config.validation_fraction)
  order = np.random.default_rng(config.seed).permutation(num_train)
  return order[num_validation:], order[:num_validation]


def _train(model, problem: Problem, config: Config, num_epochs: int,
           optimizer: str, learning_rate: float,
           workdir: str) -> list[dict[str, Any]]:
  fit_part, validation_part = split_indices(config, len(problem.x_train))
  result = train.fit(
      model, problem.x_train[fit_part], problem.codes_train[fit_part],
      key=jax.random.PRNGKey(config.seed), workdir=workdir,
      **_fit_options(config, num_epochs, optimizer, learning_rate),
      metric_fn=_metric_fn,
      x_eval=problem.x_train[validation_part],
      y_eval=problem.codes_train[validation_part])
  return [record._asdict() for record in result.history]


class Trained(NamedTuple):
  """The encoders of one model trained with every candidate.

  Attributes:
    model: the candidate with the lowest final validation error.
    history: its per-epoch training record.
    selection: JSON-able: `{'optimizer', 'learning_rate', 'validation_error':
      {candidate name: final validation prediction error}, 'by_optimizer':
      {optimizer: the name of its best candidate}, 'diverged': {candidate
      name: {'epoch', 'step'}}}`; a candidate that diverged is left out of
      the choice.
    best_of_optimizer: `{optimizer: model}`, each optimizer's best candidate
      (by validation), to report both optimizers on the test set.
  """
  model: nnx.Module
  history: list[dict[str, Any]]
  selection: dict[str, Any]
  best_of_optimizer: dict[str, nnx.Module]


def train_with_selected_rate(
    build: Callable[[], nnx.Module], problem: Problem, config: Config,
    num_epochs: int, workdir: str) -> Trained:
  """Trains `build()` once per candidate (optimizer, rate); keeps the best.

  The choice uses only the validation split held out of the training
  signals (its prediction error after the last epoch); the test set is not
  looked at. Candidate `c` checkpoints to `workdir/candidate_name(c)`.
  """
  trained, diverged = {}, {}
  for optimizer, learning_rate in config.candidates:
    model = build()
    name = candidate_name(optimizer, learning_rate)
    try:
      history = _train(model, problem, config, num_epochs, optimizer,
                       learning_rate, os.path.join(workdir, name))
    except divergence.DivergedError as error:
      # A rate too large for this dictionary: it drops out of the choice
      # (its checkpoints hold only finite epochs, so a rerun diverges again
      # at the same step).
      logging.warning('%s diverged: %s', name, error)
      diverged[name] = {'epoch': error.epoch, 'step': error.step}
      continue
    trained[name] = model, history, optimizer, learning_rate
  if not trained:
    raise divergence.DivergedError(
        f'Every candidate diverged ({diverged}); give smaller learning '
        'rates.', *max(diverged.values(), key=lambda d: d['step']).values())
  final_error = lambda name: (
      trained[name][1][-1]['eval_metrics']['prediction_error']
      if trained[name][1] else np.inf)
  best = min(trained, key=final_error)
  by_optimizer = {}
  for name, (_, _, optimizer, _) in trained.items():
    if (optimizer not in by_optimizer or
        final_error(name) < final_error(by_optimizer[optimizer])):
      by_optimizer[optimizer] = name
  model, history, optimizer, learning_rate = trained[best]
  selection = {'optimizer': optimizer, 'learning_rate': learning_rate,
               'validation_error': {name: final_error(name)
                                    for name in trained},
               'by_optimizer': by_optimizer, 'diverged': diverged}
  return Trained(model, history, selection,
                 {optimizer: trained[name][0]
                  for optimizer, name in by_optimizer.items()})


def _encoding_speed(model: nnx.Module, x_test: np.ndarray,
                    dictionary: np.ndarray, config: Config) -> dict[str, float]:
  """Seconds to code the whole test set: the encoder against 10 IHT steps."""
  model.eval()
  graphdef, state = nnx.split(model)
  # The parameters are closed over, as IHT closes over the dictionary:
  # flattening an `nnx.State` argument on every call would cost more host
  # time than the whole encoding on an accelerator.
  encode = jax.jit(lambda x: nnx.merge(graphdef, state)(x))
  x, dictionary = jnp.asarray(x_test), jnp.asarray(dictionary)
  step_size = 1 / solvers.lipschitz_constant(dictionary)
  iterations = max(config.iht_iterations)
  iht = jax.jit(lambda x: solvers.iht(
      x, dictionary, num_iterations=iterations, step_size=step_size,
      **config.problem_kwargs).codes)
  # Alternate the two, so that both see the same load on a shared machine.
  times = {'encoder': [], 'iht': []}
  for repeat in range(SPEED_REPEATS):
    for name, fn in (('encoder', encode), ('iht', iht)):
      times[name].append(reporting.time_call(lambda: fn(x), repeats=1,
                                             warmup=int(repeat == 0)))
  encoder_seconds = statistics.median(times['encoder'])
  iht_seconds = statistics.median(times['iht'])
  return {'num_signals': len(x_test), 'encoder_seconds': encoder_seconds,
          f'iht_{iterations}_seconds': iht_seconds,
          'speedup': iht_seconds / encoder_seconds}


def _epoch_seconds(model: nnx.Module, x_train: np.ndarray, config: Config,
                   selection: dict[str, Any]) -> float:
  """Wall time of one training epoch of `model` on `x_train`, compiled.

  Trains two epochs and keeps the second (the first includes compilation).
  The targets are the model's own outputs: a step costs the same whatever
  the target values.
  """
  targets = train.predict(model, x_train)
  history = train.fit(
      model, x_train, targets, key=jax.random.PRNGKey(config.seed),
      **_fit_options(config, 2, _selected_optimizer(selection),
                     selection['learning_rate']), progress=False).history
  return history[-1].seconds


def _selected_optimizer(selection: dict[str, Any]) -> str:
  # Results written before SGD and Adam were both candidates used Adam only.
  return selection.get('optimizer', 'adam')


def _selected_name(selection: dict[str, Any]) -> str:
  """The checkpoint directory of the selected candidate."""
  if 'optimizer' not in selection:  # Written before the optimizer's name was.
    return f"lr{selection['learning_rate']:g}"
  return candidate_name(selection['optimizer'], selection['learning_rate'])


def benchmark_trained_encoder(workdir: str, dictionary_dir: str | None = None,
                              data_dir: str | None = None) -> dict[str, Any]:
  """Times a finished setting's encoders again, on this machine.

  Rebuilds the deep encoder of the setting in `workdir` (a finished `run`),
  loads the parameters of the chosen learning rate from its checkpoint and
  times it against 10 IHT iterations on the test signals, as `run` does;
  then times one training epoch of the deep and of the baseline encoder on
  the training signals (less the validation share). The signals and
  dictionary come from `workdir/problem.npz` if present, else as `run` made
  them (MNIST from `data_dir`, the dictionary cached in `dictionary_dir`).

  Returns:
    The speed record of `run` (signals, seconds of each, speed-up) with the
    epoch seconds of both encoders and the device.
  """
  results = reporting.read_json(os.path.join(workdir, 'results.json'))
  config = config_from_json(results['config'], data_dir=data_dir)
  problem_path = os.path.join(workdir, 'problem.npz')
  if os.path.exists(problem_path):
    cached = validation.load_npz(problem_path, _CACHE_REMEDY)
    x_train, x_test, dictionary = (cached['x_train'], cached['x_test'],
                                   cached['dictionary'])
  else:
    x_train, x_test, dictionary = load_signals(config, dictionary_dir)
  selection = results['learning_rate_selection']
  model = build_deep_encoder(dictionary, config)
  checkpoint.restore_model(
      os.path.join(workdir, 'deep', _selected_name(selection['deep'])), model)
  speed = _encoding_speed(model, x_test, dictionary, config)
  x_fit = x_train[int(len(x_train) * config.validation_fraction):]
  baseline = models.MLPEncoder(x_train.shape[1], config.code_dim,
                               rngs=nnx.Rngs(config.seed))
  return {**speed,
          'num_train_signals': len(x_fit),
          'deep_epoch_seconds': _epoch_seconds(model, x_fit, config,
                                               selection['deep']),
          'baseline_epoch_seconds': _epoch_seconds(
              baseline, x_fit, config, selection['baseline']),
          'device': jax.devices()[0].device_kind}


def run(config: Config, workdir: str,
        dictionary_dir: str | None = None) -> dict[str, Any]:
  """Runs one setting end to end; returns (and writes) its results.

  Args:
    config: the setting.
    workdir: directory for the cached problem, checkpoints and results;
      a finished setting is read back from its `results.json`.
    dictionary_dir: where learned dictionaries are cached and shared between
      settings; None to learn each one afresh.

  Returns:
    A JSON-able dict: the config, the table rows (test metrics of each
    method), the IHT curve, the training histories and the encoding speed.
  """
  results_path = os.path.join(workdir, 'results.json')
  if os.path.exists(results_path):
    results = reporting.read_json(results_path)
    # Where the data was read from does not change the results.
    if config_from_json(results['config'], data_dir=None) == (
        dataclasses.replace(config, data_dir=None)):
      logging.info('Setting already done: %s', results_path)
      return results
    raise ValueError(f'{results_path} holds another configuration; use '
                     'another workdir.')
  problem = prepare_problem(config, workdir, dictionary_dir)
  iterations = max(config.iht_iterations)
  curve = iht_curve(problem.x_test, problem.dictionary, problem.codes_test,
                    config, iterations)
  normalized_curve = iht_curve(problem.x_test, problem.dictionary,
                               problem.codes_test, config, iterations,
                               solver=adaptive_solvers.normalized_iht)
  rows = {f'IHT ({k} iterations)': curve[k - 1] for k in config.iht_iterations}
  rows.update({f'Normalized IHT ({k} iterations)': normalized_curve[k - 1]
               for k in config.iht_iterations})

  test_metrics = lambda model: _code_metrics(
      train.predict(model, problem.x_test), problem.codes_test)
  deep_name = DEEP_NAMES[config.problem]
  baseline = train_with_selected_rate(
      lambda: models.MLPEncoder(problem.x_train.shape[1], config.code_dim,
                                rngs=nnx.Rngs(config.seed)),
      problem, config, config.baseline_epochs,
      os.path.join(workdir, 'baseline'))
  untrained = test_metrics(build_deep_encoder(problem.dictionary, config))
  deep = train_with_selected_rate(
      lambda: build_deep_encoder(problem.dictionary, config), problem, config,
      config.num_epochs, os.path.join(workdir, 'deep'))
  rows['Baseline encoder'] = test_metrics(baseline.model)
  rows[deep_name] = test_metrics(deep.model)
  # Each optimizer's best candidate (by validation) on the test set, so
  # that the paper's SGD and Adam can be compared.
  rows_by_optimizer = {
      name: {optimizer: test_metrics(model)
             for optimizer, model in trained.best_of_optimizer.items()}
      for name, trained in (('Baseline encoder', baseline),
                            (deep_name, deep))}
  dictionary = jnp.asarray(problem.dictionary)

  results = {
      'config': config_to_json(config),
      'data': {'num_train': len(problem.x_train),
               'num_test': len(problem.x_test),
               'signal_dim': problem.x_train.shape[1],
               'mean_nonzeros_of_optimal_codes': float(np.mean(
                   np.count_nonzero(problem.codes_test, axis=1))),
               'dictionary_lipschitz': float(
                   solvers.lipschitz_constant(dictionary)),
               'dictionary_coherence': float(
                   dictionary_lib.mutual_coherence(dictionary))},
      'rows': rows,
      'rows_by_optimizer': rows_by_optimizer,
      'untrained_deep_encoder': untrained,
      'iht_curve': curve,
      'normalized_iht_curve': normalized_curve,
      'history': {'baseline': baseline.history, 'deep': deep.history},
      'learning_rate_selection': {'baseline': baseline.selection,
                                  'deep': deep.selection},
      'speed': _encoding_speed(deep.model, problem.x_test, problem.dictionary,
                               config),
      'device': jax.devices()[0].device_kind,
  }
  reporting.write_json_atomic(results_path, results)
  return results


def config_to_json(config: Config) -> dict[str, Any]:
  """The config as a results file holds it (tuples as lists)."""
  return json_roundtrip(dataclasses.asdict(config))


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


def json_roundtrip(value: Any) -> Any:
  """Tuples to lists, as a JSON file gives them back."""
  if isinstance(value, dict):
    return {key: json_roundtrip(item) for key, item in value.items()}
  if isinstance(value, (list, tuple)):
    return [json_roundtrip(item) for item in value]
  return value
