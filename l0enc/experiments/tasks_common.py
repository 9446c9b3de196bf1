"""What the classification and clustering experiments share (Tables 4-7).

Every encoder is initialized from a dictionary learned on the training
signals (for clustering: on all of them; `dictionary.learn_dictionary`, l1
coding with weight `lam`), then trained end to end with a linear head
(`tasks.TaskModel`):

* 'lista' — tuned LISTA: `LISTA.from_dictionary` (K ISTA iterations), first
  trained to regress the l1 codes of the training signals (FISTA on the same
  dictionary and `lam`), then fine-tuned with the head;
* 'l0' — the Deep l0-Regularized Encoder, `DeepL0Encoder.from_dictionary`
  with `l0_lam` (by default `lam^2 mu / 2` with `mu = 1/||D||_2^2`: the l0
  problem whose hard threshold `sqrt(2 l0_lam mu)` equals LISTA's soft
  threshold `lam mu`, so both start by leaving out the same atoms; with
  `lam^2 / 2`, right only for mu = 1, the threshold is `||D||_2` times
  larger and on coherent dictionaries zeroes every code, and with it every
  gradient);
* 'msparse' — the Deep M-Sparse Encoder, `DeepMSparseEncoder.from_dictionary`
  with each M of `ms`;
* 'tdsc' (classification only) — task-driven sparse coding (Mairal et al.
  2012, `l0enc.tdsc`): elastic-net codes (`lam`, `tdsc_lam2`) over the
  dictionary, which is trained through the codes by implicit
  differentiation.

Run only when named in `encoders` (`OPTIONAL_ENCODERS`):

* 'fc' — the fully connected reference: `models.MLPEncoder` with the
  unrolled encoders' layer sizes (n -> p, then K - 1 layers p -> p), ReLU
  after every layer, no dropout, random initialization (seed), trained with
  the same head, loss and optimizer: what the sparse structure buys;
* 'l0_fixednorm', 'l0_weightnorm', 'l0_floor' — our variants of the Deep
  l0 encoder (`L0_VARIANTS`), the same initialization: the rows of W
  normalized, at fixed norms or with trained gains (`input_norm`), or each
  stage's threshold at least sqrt(2) times the RMS of its pre-activation
  (`threshold_floor`: at most half of the entries nonzero).

This module holds the settings both share (`TaskConfig`), the (method, p)
units, the synthetic mixture and the preprocessing, the per-p caches of
dictionaries and l1 codes, the encoders built from a dictionary, LISTA's
l1-code regression, and the workdir's settings check and results file.
`classification` and `clustering` run one data set each (`run(config,
workdir)`): every (method, p) unit is a resumable unit
(`l0enc.experiments.units.run_unit`, `<workdir>/<unit>/result.json`) that
trains with checkpoints under `<workdir>/<unit>/`, so a killed run resumes
where it stopped. `task_configs` builds their settings from the config
files, `task_reports` lays the results out like the paper.
"""

import dataclasses
import functools
import logging
import os
from typing import Any, Callable, NamedTuple

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from l0enc import dictionary as dictionary_lib
from l0enc import metrics
from l0enc import models
from l0enc import reporting
from l0enc import solvers
from l0enc import tasks
from l0enc import tdsc
from l0enc import train
from l0enc import validation
from l0enc import whitening
from l0enc.experiments import units as units_lib

ENCODERS = ('lista', 'l0', 'msparse')
# Our Deep l0 variants: encoder kind -> `DeepL0Encoder.from_dictionary`'s
# options. The floor sqrt(2) is the kappa of the guarantee "at most half of
# the entries nonzero" (`DeepL0Encoder`'s `threshold_floor`), fixed by that
# bound, not tuned.
L0_FLOOR = 2**0.5
L0_VARIANTS = {'l0_fixednorm': dict(input_norm='fixed'),
               'l0_weightnorm': dict(input_norm='learned'),
               'l0_floor': dict(threshold_floor=L0_FLOOR)}
OPTIONAL_ENCODERS = ('fc', *L0_VARIANTS)
OPTIMIZERS = train.OPTIMIZERS
SETTINGS_FILE = 'settings.json'
RESULTS_FILE = 'results.json'
UNIT_RESULTS_FILE = 'result.json'  # Inside <workdir>/<unit>/.


# ----------------------------------------------------------------- settings


@dataclasses.dataclass(frozen=True)
class TaskConfig:
  """Settings shared by the classification and clustering experiments.

  Attributes:
    dataset: the data set (see the subclasses).
    code_dims: the code sizes p, one table column each.
    encoders: which of 'lista', 'l0', 'msparse' (and for classification
      'tdsc') to train; also the `OPTIONAL_ENCODERS` (the fully connected
      reference 'fc', our Deep l0 variants).
    ms: the M of the Deep M-Sparse Encoder, one table row each.
    num_stages: K, the unrolled stages of every encoder (paper: 2).
    lam: l1 weight of `1/2||x - Da||^2 + lam||a||_1`: dictionary learning,
      LISTA's initialization and its regression targets.
    l0_lam: l0 weight of the Deep l0 encoder's initialization (problem 1,
      `1/2||x - Da||^2 + l0_lam||a||_0`); None for `lam**2 mu / 2`
      (`l0_weight`).
    num_epochs: end-to-end training epochs.
    lista_pretrain_epochs: epochs of LISTA's l1-code regression.
    batch_size: minibatch size (paper: 128).
    optimizer: 'adam' or 'sgd' (paper: SGD at 0.01, no momentum).
    learning_rate: the optimizer's step size.
    clip_norm: global gradient-norm clipping before the optimizer (HELU_sigma
      has slope 1/sigma on its ramps).
    min_sigma: floor of the HELU_sigma annealing 0.2, 0.02, ... (0.2 keeps
      sigma constant).
    head_weight_decay: L2 weight on the head's kernel.
    dictionary_steps: minibatches of dictionary learning.
    codes_iterations: FISTA iterations of the l1 codes (LISTA's targets,
      k-means on codes).
    seed: seed of every random choice.
    data_path: the data set's file (directory for MNIST; None tries
      tensorflow-datasets). Unused for 'synthetic'.
    num_classes: classes of the synthetic mixture.
    signal_dim: n of the synthetic mixture.
    num_synthetic: samples of the synthetic mixture.
    synthetic_noise: noise standard deviation of the synthetic mixture (its
      class means have unit-variance entries).
    whitening_epsilon: regularized ZCA whitening of the signals
      (`whitening.fit_zca`), fitted on the training split (for clustering, on
      every sample: no label is used) and applied unchanged to every split;
      images are standardized per image again afterwards
      (`whitening.whiten_patches`), Indian Pines spectra and the synthetic
      mixture are not. None for none.
  """
  dataset: str = 'synthetic'
  code_dims: tuple[int, ...] = (128,)
  encoders: tuple[str, ...] = ENCODERS
  ms: tuple[int, ...] = (10, 20, 30)
  num_stages: int = 2
  lam: float = 1.0
  l0_lam: float | None = None
  num_epochs: int = 20
  lista_pretrain_epochs: int = 10
  batch_size: int = 128
  optimizer: str = 'adam'
  learning_rate: float = 1e-3
  clip_norm: float = 1.0
  min_sigma: float = 0.01
  head_weight_decay: float = 0.0
  dictionary_steps: int = 500
  codes_iterations: int = 200
  seed: int = 0
  data_path: str | None = None
  num_classes: int = 4
  signal_dim: int = 32
  num_synthetic: int = 2000
  synthetic_noise: float = 1.0
  whitening_epsilon: float | None = None

  _datasets = ()
  _encoders = ENCODERS + OPTIONAL_ENCODERS

  def __post_init__(self):
    if self.dataset not in self._datasets:
      raise ValueError(f'dataset must be one of {self._datasets}, got '
                       f'{self.dataset!r}.')
    _check_tuple('code_dims', self.code_dims)
    for code_dim in self.code_dims:
      validation.check_int_in_range('code_dims entry', code_dim, 1, 2**20)
    _check_tuple('encoders', self.encoders)
    for encoder in self.encoders:
      if encoder not in self._encoders:
        raise ValueError(f'encoders must be among {self._encoders}, got '
                         f'{encoder!r}.')
    if 'msparse' in self.encoders:
      _check_tuple('ms', self.ms)
      for m in self.ms:
        validation.check_int_in_range(
            f'M (at most the smallest p, {min(self.code_dims)})', m, 1,
            min(self.code_dims))
    validation.check_int_in_range('num_stages', self.num_stages, 1, 64)
    validation.check_positive('lam', self.lam)
    validation.check_positive('l0_lam', self.l0_lam)
    validation.check_int_in_range('num_epochs', self.num_epochs, 1, 2**31 - 1)
    validation.check_int_in_range('lista_pretrain_epochs',
                                  self.lista_pretrain_epochs, 0, 2**31 - 1)
    validation.check_int_in_range('batch_size', self.batch_size, 1, 2**31 - 1)
    if self.optimizer not in OPTIMIZERS:
      raise ValueError(f'optimizer must be one of {tuple(OPTIMIZERS)}, got '
                       f'{self.optimizer!r}.')
    validation.check_positive('learning_rate', self.learning_rate)
    validation.check_positive('clip_norm', self.clip_norm)
    initial_sigma = train.TrainConfig().initial_sigma
    if not 0 <= self.min_sigma <= initial_sigma:
      raise ValueError(f'min_sigma must be in [0, {initial_sigma:g}] (equal: '
                       f'sigma stays constant), got {self.min_sigma}.')
    validation.check_nonnegative('head_weight_decay', self.head_weight_decay)
    validation.check_int_in_range('dictionary_steps', self.dictionary_steps,
                                  1, 2**31 - 1)
    validation.check_int_in_range('codes_iterations', self.codes_iterations,
                                  1, 2**31 - 1)
    validation.check_int_in_range('seed', self.seed, 0, 2**31 - 1)
    validation.check_int_in_range('num_classes', self.num_classes, 2, 2**20)
    validation.check_int_in_range('signal_dim', self.signal_dim, 1, 2**20)
    validation.check_int_in_range('num_synthetic', self.num_synthetic,
                                  self.num_classes, 2**31 - 1)
    validation.check_nonnegative('synthetic_noise', self.synthetic_noise)
    validation.check_positive('whitening_epsilon', self.whitening_epsilon)
    if self.dataset != 'synthetic' and self.data_path is None and (
        self.dataset != 'mnist'):
      raise ValueError(f'dataset {self.dataset!r} needs data_path.')

  def l0_weight(self, step_size: float) -> float:
    """The Deep l0 encoder's l0 weight for IHT's step `mu` (see `l0_lam`)."""
    return self.lam**2 * step_size / 2 if self.l0_lam is None else self.l0_lam

  def units(self) -> list['Unit']:
    """The (method, p) units of the trained encoders, in table order."""
    units = []
    for code_dim in self.code_dims:
      for encoder in self.encoders:
        for m in (self.ms if encoder == 'msparse' else (None,)):
          units.append(Unit(encoder, code_dim, m))
    return units


def _check_tuple(name: str, value: Any) -> None:
  if not isinstance(value, tuple) or not value:
    raise ValueError(f'{name} must be a non-empty tuple, got {value!r}.')
  if len(set(value)) != len(value):
    raise ValueError(f'{name} has repeated entries: {value!r}.')



class Unit(NamedTuple):
  """One trained model: an encoder kind at one code size (and M)."""
  encoder: str
  code_dim: int
  m: int | None = None

  @property
  def name(self) -> str:
    """The unit's directory: e.g. 'msparse_m10_p128'; 'kmeans_input' (p 0)."""
    if self.code_dim == 0:  # Independent of p: one unit for every column.
      return self.encoder
    m = '' if self.m is None else f'_m{self.m}'
    return f'{self.encoder}{m}_p{self.code_dim}'

  @property
  def row(self) -> str:
    return row_name(self.encoder, self.m)


def row_name(method: str, m: int | None = None) -> str:
  """The paper's row label of a method."""
  return {'tdsc': 'TDSC', 'lista': 'Tuned LISTA',
          'l0': 'Deep l0-Regularized',
          'l0_fixednorm': 'Deep l0-Regularized, ours: rows of W at fixed norm',
          'l0_weightnorm': 'Deep l0-Regularized, ours: weight-normalized W',
          'l0_floor': 'Deep l0-Regularized, ours: θ ≥ √2 RMS(u)',
          'fc': 'Fully connected ReLU (reference)',
          'msparse': f'Deep M-Sparse (M = {m})',
          'kmeans_input': 'k-means on the inputs (reference)',
          'kmeans_codes': 'k-means on the l1 codes (reference)'}[method]



# ---------------------------------------------------------- preprocessing


def make_mixture(seed: int, num_samples: int, num_classes: int,
                 signal_dim: int, noise: float = 1.0
                 ) -> tuple[np.ndarray, np.ndarray]:
  """A Gaussian mixture: `x = mu_y + noise * N(0, I)`, balanced classes.

  The class means have i.i.d. standard normal entries, so two means are
  about `sqrt(2 n)` apart.

  Args:
    seed: NumPy seed.
    num_samples: N.
    num_classes: K; the labels are `arange(N) % K`, shuffled.
    signal_dim: n.
    noise: the noise standard deviation.

  Returns:
    `(x, y)`: float32 `(N, n)` and int64 `(N,)`.
  """
  rng = np.random.default_rng(seed)
  means = rng.normal(size=(num_classes, signal_dim))
  labels = rng.permutation(np.arange(num_samples) % num_classes)
  x = means[labels] + noise * rng.normal(size=(num_samples, signal_dim))
  return x.astype(np.float32), labels.astype(np.int64)


def standardize_rows(x: np.ndarray) -> np.ndarray:
  """Flattens samples and gives each zero mean and unit variance.

  Args:
    x: shape `(N, ...)`.

  Returns:
    float32 `(N, n)` with `||row||^2 = n`.

  Raises:
    ValueError: if a sample is constant.
  """
  flat = np.asarray(x, np.float64).reshape(len(x), -1)
  centred = flat - flat.mean(axis=1, keepdims=True)
  std = centred.std(axis=1, keepdims=True)
  if np.any(std == 0):
    raise ValueError(f'{int(np.sum(std == 0))} sample(s) are constant and '
                     'cannot be standardized.')
  return (centred / std).astype(np.float32)


def stratified_split(labels: np.ndarray, fraction: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Indices `(kept, held_out)`: `floor(fraction * count)` of each class out.

  A class too small to give one sample keeps all of its samples.
  """
  rng = np.random.default_rng(seed)
  held_out = []
  for label in np.unique(labels):
    members = rng.permutation(np.flatnonzero(labels == label))
    held_out.append(members[:int(fraction * members.size)])
  held_out = np.sort(np.concatenate(held_out))
  kept = np.setdiff1d(np.arange(len(labels)), held_out)
  return kept, held_out



def whiten(config: TaskConfig, x_fit: np.ndarray, *others: np.ndarray
            ) -> tuple[np.ndarray, ...]:
  """ZCA fitted on `x_fit`, applied to it and `others`; then a caption note.

  Images (MNIST, COIL-20, CMU PIE) are standardized per image again after
  whitening, as the paper's per-image normalization left them; Indian Pines
  spectra and the synthetic mixture are not.
  """
  zca = whitening.fit_zca(x_fit, config.whitening_epsilon)
  per_image = config.dataset in ('mnist', 'coil20', 'pie')
  whiten = (functools.partial(whitening.whiten_patches, zca) if per_image
            else functools.partial(whitening.apply, zca))
  note = (f'; ZCA-whitened (eps = {config.whitening_epsilon:g}, fitted on '
          'the training split)' +
          (', then standardized per image again' if per_image else ''))
  return (*(whiten(x).astype(np.float32) for x in (x_fit, *others)), note)



# ------------------------------------------------------- cached components


def cached_arrays(path: str, compute: Callable[[], dict[str, np.ndarray]]
                  ) -> dict[str, np.ndarray]:
  """The arrays of the `.npz` cache at `path`, computed if it is missing.

  Args:
    path: the cache file (written atomically: absent or complete).
    compute: `compute() -> {name: array}`, called only without the file.

  Returns:
    The arrays.

  Raises:
    validation.DamagedFileError: the file is there but unreadable, naming it.
  """
  if os.path.exists(path):
    return validation.load_npz(
        path, 'It is a cache: delete it and rerun to recompute it.')
  arrays = compute()
  reporting.save_npz_atomic(path, **arrays)
  return arrays


def learned_dictionary(config: TaskConfig, x: np.ndarray, code_dim: int,
                       workdir: str) -> np.ndarray:
  """The dictionary `(n, p)` learned on `x`, cached in `workdir`."""
  def compute():
    logging.info('Learning a dictionary with p = %d atoms on %d signals.',
                 code_dim, len(x))
    result = dictionary_lib.learn_dictionary(
        jax.random.fold_in(jax.random.PRNGKey(config.seed), code_dim),
        jnp.asarray(x), code_dim, lam=config.lam,
        num_steps=config.dictionary_steps,
        log_every=max(config.dictionary_steps // 5, 1))
    return {'dictionary': np.asarray(result.dictionary),
            'objective': result.objective}
  return cached_arrays(os.path.join(workdir, f'dictionary_p{code_dim}.npz'),
                       compute)['dictionary']


def l1_codes(config: TaskConfig, x: np.ndarray, dictionary: np.ndarray,
             path: str, chunk_size: int = 8192) -> np.ndarray:
  """FISTA codes of problem (3) with `config.lam`, cached at `path`."""
  def compute():
    codes = []
    for start in range(0, len(x), chunk_size):
      codes.append(np.asarray(solvers.fista(
          jnp.asarray(x[start:start + chunk_size]), jnp.asarray(dictionary),
          config.lam, num_iterations=config.codes_iterations).codes))
    codes = np.concatenate(codes)
    logging.info('l1 codes of %d signals: %.1f nonzeros on average.',
                 len(x), np.mean(np.count_nonzero(codes, axis=1)))
    return {'codes': codes}
  return cached_arrays(path, compute)['codes']


def build_encoder(config: TaskConfig, dictionary: np.ndarray, encoder: str,
                  m: int | None = None) -> nnx.Module:
  """The encoder of a unit, initialized from the dictionary (eq. 8).

  The fully connected reference ('fc') takes only its sizes from it.
  """
  dictionary = jnp.asarray(dictionary)
  if encoder == 'lista':
    return models.LISTA.from_dictionary(dictionary, lam=config.lam,
                                        num_stages=config.num_stages)
  if encoder == 'l0' or encoder in L0_VARIANTS:
    step_size = 1 / float(solvers.lipschitz_constant(dictionary))
    return models.DeepL0Encoder.from_dictionary(
        dictionary, lam=config.l0_weight(step_size), step_size=step_size,
        num_stages=config.num_stages, **L0_VARIANTS.get(encoder, {}))
  if encoder == 'fc':
    # The dictionary gives only the sizes: the reference learns from scratch.
    signal_dim, code_dim = dictionary.shape
    return models.MLPEncoder(
        signal_dim, code_dim, dropout_rates=(0.0,) * (config.num_stages - 1),
        relu_output=True, rngs=nnx.Rngs(config.seed))
  if encoder == 'tdsc':
    return tdsc.ElasticNetEncoder(dictionary, lam1=config.lam,
                                  lam2=config.tdsc_lam2,
                                  num_iterations=config.tdsc_iterations)
  return models.DeepMSparseEncoder.from_dictionary(
      dictionary, m=m, num_stages=config.num_stages)


@functools.cache
def transformation(optimizer: str, learning_rate: float, clip_norm: float,
                   head_weight_decay: float) -> optax.GradientTransformation:
  """Every fit's optimizer (`train.make_optimizer`), the head's decay first."""
  # Cached: a new head_weight_decay object would make a new optimizer, and
  # the optimizer is part of the compiled step's static graph definition.
  decay = ((tasks.head_weight_decay(head_weight_decay),)
           if head_weight_decay else ())
  return train.make_optimizer(optimizer, learning_rate, clip_norm=clip_norm,
                              before=decay)


def train_config(config: TaskConfig, num_epochs: int) -> train.TrainConfig:
  """`train.TrainConfig` of `num_epochs` epochs at the config's settings."""
  return train.TrainConfig(num_epochs=num_epochs,
                           batch_size=config.batch_size,
                           min_sigma=config.min_sigma)


def history_dicts(result: train.FitResult) -> list[dict[str, Any]]:
  """The fit's history as JSON-able dicts."""
  return [record._asdict() for record in result.history]


def mean_nonzeros(codes: np.ndarray) -> float:
  """Mean number of nonzero entries per code, `codes` of shape `(N, p)`."""
  return float(np.mean(np.count_nonzero(codes, axis=1)))


def _code_metric(outputs, targets):
  return {'prediction_error': metrics.prediction_error(outputs, targets)}


def pretrain_lista(config: TaskConfig, encoder: nnx.Module, x: np.ndarray,
                   codes: np.ndarray, x_eval: np.ndarray,
                   codes_eval: np.ndarray, workdir: str
                   ) -> list[dict[str, Any]]:
  """Trains LISTA to regress l1 codes ("pre-trained LISTA"); its history."""
  if config.lista_pretrain_epochs == 0:
    return []
  result = train.fit(
      encoder, x, codes, key=jax.random.PRNGKey(config.seed),
      config=train_config(config, config.lista_pretrain_epochs),
      tx=transformation(config.optimizer, config.learning_rate,
                        config.clip_norm, 0.0),
      metric_fn=_code_metric, x_eval=x_eval, y_eval=codes_eval,
      workdir=workdir, progress=False)
  return history_dicts(result)


# -------------------------------------------------------- settings and runs


def check_settings(config: TaskConfig, workdir: str) -> None:
  """Every cache in `workdir` belongs to one setting; refuse another.

  The settings are the config less the fields that only choose units
  (code sizes, encoders, M), so a run may add units to a workdir.
  """
  settings = _settings(config)
  path = os.path.join(workdir, SETTINGS_FILE)
  if os.path.exists(path):
    saved = reporting.read_json(path)
    # A field added after the run was written matches at its default, which
    # reproduces the code that wrote it.
    defaults = {field.name: _json_roundtrip(field.default)
                for field in dataclasses.fields(config)}
    saved |= {name: defaults[name] for name in settings
              if name not in saved and name in defaults}
    if saved != settings:
      raise ValueError(f'{workdir} holds a run with other settings (see '
                       f'{path}); use another workdir.')
    return
  reporting.write_json_atomic(path, settings)


def _settings(config: TaskConfig) -> dict[str, Any]:
  settings = jsonable(config)
  for name in ('code_dims', 'encoders', 'ms'):
    del settings[name]
  return {'experiment': type(config).__name__, **settings}


def jsonable(config: TaskConfig) -> dict[str, Any]:
  """The config as JSON gives it back (tuples as lists)."""
  return _json_roundtrip(dataclasses.asdict(config))


def _json_roundtrip(value: Any) -> Any:
  if isinstance(value, dict):
    return {key: _json_roundtrip(item) for key, item in value.items()}
  if isinstance(value, (list, tuple)):
    return [_json_roundtrip(item) for item in value]
  return value



def run_task_unit(workdir: str, unit: Unit,
                  compute: Callable[[str], dict[str, Any]],
                  report_only: bool = False) -> dict[str, Any] | None:
  """One (method, p) unit, or its results read back (`units.run_unit`).

  The results file `<workdir>/<unit.name>/result.json` holds the unit
  (`Unit._asdict()`) under 'unit', and its wall time and device.

  Args:
    workdir: the data set's directory.
    unit: the unit.
    compute: `compute(unit_dir) -> results`.
    report_only: return None instead of computing an unfinished unit.

  Returns:
    The unit's results, or None (`report_only`, unfinished).
  """
  return units_lib.run_unit(
      os.path.join(workdir, unit.name), unit._asdict(), compute,
      results_file=UNIT_RESULTS_FILE, settings_key='unit',
      report_only=report_only, timed=True)


def write_results(config: TaskConfig, workdir: str, experiment: str,
                  data_summary: dict[str, Any],
                  units: dict[str, dict[str, Any] | None],
                  report_only: bool = False) -> dict[str, Any]:
  """The data set's results, also written to `<workdir>/results.json`.

  Args:
    config: the data set's settings.
    workdir: the data set's directory.
    experiment: 'classification' or 'clustering'.
    data_summary: what the data is (description, sizes).
    units: per unit name its results; None (not finished) is left out.
    report_only: the units were read back, not computed here: the device
      is the one the last full run recorded.

  Returns:
    `{'experiment', 'config', 'data', 'units', 'device'}`, JSON-able.
  """
  results_path = os.path.join(workdir, RESULTS_FILE)
  device = jax.devices()[0].device_kind
  if report_only and os.path.exists(results_path):
    # The units were computed where the last full run was.
    device = reporting.read_json(results_path)['device']
  results = {
      'experiment': experiment,
      'config': jsonable(config),
      'data': data_summary,
      'units': {name: unit for name, unit in units.items()
                if unit is not None},
      'device': device,
  }
  reporting.write_json_atomic(results_path, results)
  return results
