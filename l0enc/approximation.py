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
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
from flax import nnx
import matplotlib.figure
import numpy as np
import optax

from l0enc import data
from l0enc import dictionary as dictionary_lib
from l0enc import metrics
from l0enc import models
from l0enc import reporting
from l0enc import solvers
from l0enc import train
from l0enc import validation

PROBLEMS = ('l0', 'msparse')
OPTIMIZERS = {'sgd': optax.sgd, 'adam': optax.adam}
DATASETS = ('synthetic', 'mnist')
SPEED_REPEATS = 20  # Timed runs of the encoding benchmark (the median is kept).

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
    num_epochs: training epochs of the deep encoder.
    baseline_epochs: training epochs of the baseline encoder.
    batch_size: minibatch size (paper: 128).
    optimizer: 'sgd' (the paper's: no momentum) or 'adam'.
    learning_rates: candidate learning rates (paper: 0.01 with SGD). Each
      encoder is trained once per candidate and the one with the lowest
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
    codes_tol: tolerance of `optimal_codes` (both phases).
    codes_max_iterations: iteration cap of each phase of `optimal_codes`.
  """
  dataset: str = 'synthetic'
  problem: str = 'l0'
  code_dim: int = 128
  lam: float = 0.05
  m: int = 8
  num_stages: int = 2
  num_epochs: int = 20
  baseline_epochs: int = 20
  batch_size: int = 128
  optimizer: str = 'adam'
  learning_rates: tuple[float, ...] = (0.001,)
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
    if self.optimizer not in OPTIMIZERS:
      raise ValueError(f'optimizer must be one of {tuple(OPTIMIZERS)}, got '
                       f'{self.optimizer!r}.')
    if not self.learning_rates:
      raise ValueError('learning_rates must hold at least one rate.')
    for learning_rate in self.learning_rates:
      validation.check_positive('learning_rates', learning_rate)
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
  def problem_kwargs(self) -> dict[str, Any]:
    return {'lam': self.lam} if self.problem == 'l0' else {'m': self.m}


class Problem(NamedTuple):
  """Signals, dictionary and optimal codes of one setting (NumPy arrays)."""
  dictionary: np.ndarray
  x_train: np.ndarray
  codes_train: np.ndarray
  x_test: np.ndarray
  codes_test: np.ndarray


def _signals(config: Config, dictionary_dir: str | None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(train signals, test signals, dictionary) of the configured dataset.

  A learned dictionary is cached in `dictionary_dir` (if given) under a name
  that holds every setting it depends on, so problems (1) and (2) share it.
  """
  key = jax.random.PRNGKey(config.seed)
  if config.dataset == 'synthetic':
    # The generating dictionary is known: it is the one the codes refer to.
    generated = data.make_synthetic(
        key, config.num_train + config.num_test,
        signal_dim=config.signal_dim, code_dim=config.code_dim,
        nonzero_prob=config.nonzero_prob, snr_db=config.snr_db)
    signals = np.asarray(generated.signals)
    return (signals[:config.num_train], signals[config.num_train:],
            np.asarray(generated.dictionary))
  x_train, x_test = mnist_patches(config.data_dir)
  path = dictionary_dir and os.path.join(
      dictionary_dir, f'mnist_p{config.code_dim}_lam{config.dictionary_lam:g}_'
      f'steps{config.dictionary_steps}_seed{config.seed}.npy')
  if path and os.path.exists(path):
    return x_train, x_test, np.load(path)
  dictionary = np.asarray(dictionary_lib.learn_dictionary(
      jax.random.fold_in(key, 1), jnp.asarray(x_train), config.code_dim,
      lam=config.dictionary_lam, num_steps=config.dictionary_steps,
      log_every=max(config.dictionary_steps // 10, 1)).dictionary)
  if path:
    os.makedirs(dictionary_dir, exist_ok=True)
    np.save(path + '.tmp.npy', dictionary)
    os.replace(path + '.tmp.npy', path)
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
    with np.load(path, allow_pickle=False) as cached:
      logging.info('Loaded the problem from %s.', path)
      return Problem(**{name: cached[name] for name in Problem._fields})
  x_train, x_test, dictionary = _signals(config, dictionary_dir)
  problem = Problem(dictionary, x_train,
                    optimal_codes_in_chunks(x_train, dictionary, config),
                    x_test, optimal_codes_in_chunks(x_test, dictionary, config))
  os.makedirs(workdir, exist_ok=True)
  temporary = os.path.join(workdir, 'problem.tmp.npz')
  np.savez(temporary, **problem._asdict())
  os.replace(temporary, path)
  return problem


def _code_metrics(predicted, target) -> dict[str, float]:
  return {'prediction_error': float(metrics.prediction_error(predicted,
                                                             target)),
          'support_error': float(metrics.support_error(predicted, target)),
          'nmse_db': float(metrics.nmse_db(predicted, target))}


def _metric_fn(outputs, targets):
  return {'prediction_error': metrics.prediction_error(outputs, targets)}


def iht_curve(problem: Problem, config: Config,
              max_iterations: int) -> list[dict[str, float]]:
  """Test metrics of IHT from zero after 1, 2, ..., max_iterations steps."""
  x, dictionary = jnp.asarray(problem.x_test), jnp.asarray(problem.dictionary)
  codes = jnp.zeros((len(problem.x_test), problem.dictionary.shape[1]),
                    x.dtype)
  curve = []
  for _ in range(max_iterations):
    # One step at a time from the previous codes: one compilation in all.
    codes = solvers.iht(x, dictionary, num_iterations=1, init=codes,
                        **config.problem_kwargs).codes
    curve.append(_code_metrics(codes, problem.codes_test))
  return curve


def build_deep_encoder(dictionary: np.ndarray, config: Config) -> nnx.Module:
  """The deep encoder of the problem, initialized from the dictionary (eq. 8)."""
  dictionary = jnp.asarray(dictionary)
  if config.problem == 'l0':
    return models.DeepL0Encoder.from_dictionary(
        dictionary, lam=config.lam, num_stages=config.num_stages)
  return models.DeepMSparseEncoder.from_dictionary(
      dictionary, m=config.m, num_stages=config.num_stages)


def _fit_options(config: Config, num_epochs: int,
                 learning_rate: float) -> dict[str, Any]:
  """`train.fit`'s `config` and `tx` for the encoders of this experiment."""
  return dict(
      config=train.TrainConfig(num_epochs=num_epochs,
                               batch_size=config.batch_size,
                               min_sigma=config.min_sigma),
      tx=optax.chain(optax.clip_by_global_norm(config.clip_norm),
                     OPTIMIZERS[config.optimizer](learning_rate)))


def _train(model, problem: Problem, config: Config, num_epochs: int,
           learning_rate: float, workdir: str) -> list[dict[str, Any]]:
  num_validation = int(len(problem.x_train) * config.validation_fraction)
  order = np.random.default_rng(config.seed).permutation(len(problem.x_train))
  fit_part, validation_part = order[num_validation:], order[:num_validation]
  result = train.fit(
      model, problem.x_train[fit_part], problem.codes_train[fit_part],
      key=jax.random.PRNGKey(config.seed), workdir=workdir,
      **_fit_options(config, num_epochs, learning_rate), metric_fn=_metric_fn,
      x_eval=problem.x_train[validation_part],
      y_eval=problem.codes_train[validation_part])
  return [record._asdict() for record in result.history]


def train_with_selected_rate(
    build: Callable[[], nnx.Module], problem: Problem, config: Config,
    num_epochs: int, workdir: str
) -> tuple[nnx.Module, list[dict[str, Any]], dict[str, Any]]:
  """Trains `build()` once per candidate rate and keeps the best.

  The choice uses only the validation split held out of the training
  signals (its prediction error after the last epoch); the test set is not
  looked at.

  Returns:
    `(model, history, selection)`: the chosen model and its training
    history, and `{'learning_rate': chosen, 'validation_error': {rate:
    validation prediction error}}`.
  """
  trained = {}
  for learning_rate in config.learning_rates:
    model = build()
    history = _train(model, problem, config, num_epochs, learning_rate,
                     os.path.join(workdir, f'lr{learning_rate:g}'))
    trained[learning_rate] = model, history
  final_error = lambda rate: (
      trained[rate][1][-1]['eval_metrics']['prediction_error']
      if trained[rate][1] else np.inf)
  best = min(config.learning_rates, key=final_error)
  selection = {'learning_rate': best,
               'validation_error': {f'{rate:g}': final_error(rate)
                                    for rate in config.learning_rates}}
  return (*trained[best], selection)


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
                   learning_rate: float) -> float:
  """Wall time of one training epoch of `model` on `x_train`, compiled.

  Trains two epochs and keeps the second (the first includes compilation).
  The targets are the model's own outputs: a step costs the same whatever
  the target values.
  """
  targets = train.predict(model, x_train)
  history = train.fit(
      model, x_train, targets, key=jax.random.PRNGKey(config.seed),
      **_fit_options(config, 2, learning_rate), progress=False).history
  return history[-1].seconds


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
    with np.load(problem_path, allow_pickle=False) as cached:
      x_train, x_test, dictionary = (cached['x_train'], cached['x_test'],
                                     cached['dictionary'])
  else:
    x_train, x_test, dictionary = _signals(config, dictionary_dir)
  selection = results['learning_rate_selection']
  model = build_deep_encoder(dictionary, config)
  rate = selection['deep']['learning_rate']
  train.restore_model(os.path.join(workdir, 'deep', f'lr{rate:g}'), model)
  speed = _encoding_speed(model, x_test, dictionary, config)
  x_fit = x_train[int(len(x_train) * config.validation_fraction):]
  baseline = models.MLPEncoder(x_train.shape[1], config.code_dim,
                               rngs=nnx.Rngs(config.seed))
  return {**speed,
          'num_train_signals': len(x_fit),
          'deep_epoch_seconds': _epoch_seconds(model, x_fit, config, rate),
          'baseline_epoch_seconds': _epoch_seconds(
              baseline, x_fit, config, selection['baseline']['learning_rate']),
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
    same = lambda c: {k: v for k, v in c.items() if k != 'data_dir'}
    if same(results['config']) == same(_jsonable(config)):
      logging.info('Setting already done: %s', results_path)
      return results
    raise ValueError(f'{results_path} holds another configuration; use '
                     'another workdir.')
  problem = prepare_problem(config, workdir, dictionary_dir)
  curve = iht_curve(problem, config, max(config.iht_iterations))
  rows = {f'IHT ({k} iterations)': curve[k - 1] for k in config.iht_iterations}

  baseline, baseline_history, baseline_selection = train_with_selected_rate(
      lambda: models.MLPEncoder(problem.x_train.shape[1], config.code_dim,
                                rngs=nnx.Rngs(config.seed)),
      problem, config, config.baseline_epochs,
      os.path.join(workdir, 'baseline'))
  rows['Baseline encoder'] = _code_metrics(
      train.predict(baseline, problem.x_test), problem.codes_test)

  untrained = _code_metrics(
      train.predict(build_deep_encoder(problem.dictionary, config),
                    problem.x_test), problem.codes_test)
  deep, deep_history, deep_selection = train_with_selected_rate(
      lambda: build_deep_encoder(problem.dictionary, config), problem, config,
      config.num_epochs, os.path.join(workdir, 'deep'))
  rows[DEEP_NAMES[config.problem]] = _code_metrics(
      train.predict(deep, problem.x_test), problem.codes_test)

  results = {
      'config': _jsonable(config),
      'data': {'num_train': len(problem.x_train),
               'num_test': len(problem.x_test),
               'signal_dim': problem.x_train.shape[1],
               'mean_nonzeros_of_optimal_codes': float(np.mean(
                   np.count_nonzero(problem.codes_test, axis=1))),
               'dictionary_lipschitz': float(solvers.lipschitz_constant(
                   jnp.asarray(problem.dictionary)))},
      'rows': rows,
      'untrained_deep_encoder': untrained,
      'iht_curve': curve,
      'history': {'baseline': baseline_history, 'deep': deep_history},
      'learning_rate_selection': {'baseline': baseline_selection,
                                  'deep': deep_selection},
      'speed': _encoding_speed(deep, problem.x_test, problem.dictionary,
                               config),
      'device': jax.devices()[0].device_kind,
  }
  reporting.write_json_atomic(results_path, results)
  return results


def _jsonable(config: Config) -> dict[str, Any]:
  return json_roundtrip(dataclasses.asdict(config))


def config_from_json(fields: dict[str, Any], **overrides: Any) -> Config:
  """The `Config` of a results file (lists back to tuples)."""
  fields = {name: tuple(value) if isinstance(value, list) else value
            for name, value in fields.items()}
  return Config(**{**fields, **overrides})


def json_roundtrip(value: Any) -> Any:
  """Tuples to lists, as a JSON file gives them back."""
  if isinstance(value, dict):
    return {key: json_roundtrip(item) for key, item in value.items()}
  if isinstance(value, (list, tuple)):
    return [json_roundtrip(item) for item in value]
  return value


def paper_tables(results: Sequence[dict[str, Any]]) -> str:
  """Tables 1-3 in the paper's layout: ours, with the paper's in brackets.

  The paper's numbers are shown only beside MNIST runs at its code sizes.

  Args:
    results: outputs of `run`, any mix of problems and code sizes.

  Returns:
    Markdown: one table per problem (prediction error, %) and the support
    error table for problem (2), with a column per code size present.
  """
  sections = []
  titles = {'l0': 'Prediction error (%), problem (1)',
            'msparse': 'Prediction error (%), problem (2)',
            'support': 'Support error (mismatched positions per sample), '
                       'problem (2)'}
  for table in ('l0', 'msparse', 'support'):
    problem = 'l0' if table == 'l0' else 'msparse'
    runs = sorted((r for r in results if r['config']['problem'] == problem),
                  key=lambda r: r['config']['code_dim'])
    if not runs:
      continue
    code_dims = [r['config']['code_dim'] for r in runs]
    metric = 'support_error' if table == 'support' else 'prediction_error'
    method_names = [name for name in runs[0]['rows']
                    if table != 'support' or name != 'Baseline encoder']
    body = []
    for name in method_names:
      cells = [name]
      for run_result, code_dim in zip(runs, code_dims):
        ours = run_result['rows'][name][metric]
        paper = PAPER_TABLES[table].get(name)
        on_paper_setting = (run_result['config']['dataset'] == 'mnist' and
                            code_dim in PAPER_CODE_DIMS)
        cells.append(f'{ours:.2f}' if paper is None or not on_paper_setting else
                     f'{ours:.2f} ({paper[PAPER_CODE_DIMS.index(code_dim)]})')
      body.append(cells)
    paper = ' (paper)' if any(r['config']['dataset'] == 'mnist'
                              for r in runs) else ''
    sections.append(f'**{titles[table]}** — ours{paper}\n\n' +
                    reporting.markdown_table(
                        ['method'] + [f'p = {p}' for p in code_dims], body))
  return '\n'.join(sections)


def plot(results: Sequence[dict[str, Any]], path: str) -> None:
  """Error against iterations / stages, and validation error per epoch.

  One row per code size p and, for each problem, two panels: the test
  prediction error of IHT after 1..10 iterations (line), of the deep encoder
  with its K stages (star) and of the baseline encoder (dashed); then the
  validation prediction error of the two trained encoders after each epoch.
  """
  code_dims = sorted({r['config']['code_dim'] for r in results})
  problems = [p for p in PROBLEMS
              if any(r['config']['problem'] == p for r in results)]
  # The object-oriented API: no pyplot state, no backend switch for users.
  figure = matplotlib.figure.Figure(
      figsize=(4.2 * 2 * len(problems), 3.4 * len(code_dims)))
  axes = figure.subplots(len(code_dims), 2 * len(problems), squeeze=False)
  for result in results:
    config = result['config']
    row = code_dims.index(config['code_dim'])
    column = 2 * problems.index(config['problem'])
    errors, curves = axes[row, column], axes[row, column + 1]
    deep_name = DEEP_NAMES[config['problem']]
    setting = (f"{config['dataset']}, problem "
               f"{'(1)' if config['problem'] == 'l0' else '(2)'}, "
               f"p = {config['code_dim']}")
    curve = [point['prediction_error'] for point in result['iht_curve']]
    errors.plot(range(1, len(curve) + 1), curve, 'o-',
                label='IHT (iterations)')
    errors.plot([config['num_stages']],
                [result['rows'][deep_name]['prediction_error']], '*',
                markersize=14,
                label=f"{deep_name} ({config['num_stages']} stages)")
    errors.axhline(result['rows']['Baseline encoder']['prediction_error'],
                   linestyle='--', color='gray', label='Baseline encoder')
    errors.set(yscale='log', xlabel='IHT iterations / encoder stages',
               ylabel='test prediction error (%)', title=setting)
    errors.legend(fontsize=7)
    for name, label in (('deep', deep_name), ('baseline', 'Baseline encoder')):
      history = result['history'][name]
      curves.plot([r['epoch'] for r in history],
                  [r['eval_metrics']['prediction_error'] for r in history],
                  label=label)
    curves.set(yscale='log', xlabel='epoch',
               ylabel='validation prediction error (%)',
               title=f'training, {setting}')
    curves.legend(fontsize=7)
  figure.tight_layout()
  reporting.save_figure_atomic(figure, path, dpi=100)
