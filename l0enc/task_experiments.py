"""Classification and clustering experiments (Tables 4-7 of the l0 paper).

Every encoder is initialized from a dictionary learned on the training
signals (for clustering: on all of them; `dictionary.learn_dictionary`, l1
coding with weight `lam`), then
trained end to end with a linear head (`tasks.TaskModel`):

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

Classification (`ClassificationConfig`: MNIST, Indian Pines, a synthetic
mixture) trains with the softmax cross entropy on the training split minus a
stratified validation split; the validation error is monitored after every
epoch and picks the "best classifier" of the confusion matrix; the test set
is used once, after the last epoch. With `augment` (MNIST only), every epoch
of end-to-end training sees a fresh random distortion of the training
images (`AUGMENTATION`: small rotations and scalings, blur, noise; see
`l0enc.augment`), standardized per image like the clean ones; LISTA's
l1-code regression and the dictionary use the clean images.

Clustering (`ClusteringConfig`: COIL-20, CMU PIE, a synthetic mixture) has no
split: every signal is clustered, and labels only score the result. The
head starts as the soft nearest-centroid rule of k-means on the untrained
encoder's codes (`tasks.init_cluster_head`), then encoder and head are
trained with regularized information maximization
(`tasks.InformationMaximizationLoss` plus a weight decay on the head). The
references are k-means on the inputs and k-means on the l1 codes.
Hyperparameters are fixed in advance, not tuned on the labels; the
per-epoch clustering error is recorded for the learning curves only.

`run(config, workdir)` runs one data set: every (method, p) unit caches its
result in `<workdir>/<unit>/result.json` and trains with resumable
checkpoints under `<workdir>/<unit>/`; dictionaries and l1 codes are cached
per p. A killed run resumes where it stopped. `paper_table` lays results out
like the paper's tables, `plot_learning_curves` and `plot_confusion_matrix`
draw them.
"""

import dataclasses
import functools
import logging
import os
import time
from typing import Any, Callable, NamedTuple, Sequence

from flax import nnx
import jax
import jax.numpy as jnp
import matplotlib.figure
import numpy as np
import optax

from l0enc import augment as augment_lib
from l0enc import checkpoint
from l0enc import data as data_lib
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

CLASSIFICATION_DATASETS = ('synthetic', 'mnist', 'indian_pines')
CLUSTERING_DATASETS = ('synthetic', 'coil20', 'pie')
ENCODERS = ('lista', 'l0', 'msparse')
CLASSIFICATION_ENCODERS = ENCODERS + ('tdsc',)
OPTIMIZERS = train.OPTIMIZERS
PAPER_CODE_DIMS = (128, 256, 512)
SETTINGS_FILE = 'settings.json'
RESULTS_FILE = 'results.json'

# The paper's Tables 4-7 (Wang et al., AAAI 2016), p = 128 / 256 / 512, in %.
PAPER_TABLES = {
    'mnist': {
        'TDSC': (0.71, 0.55, 0.53),
        'Tuned LISTA': (0.74, 0.62, 0.57),
        'Deep l0-Regularized': (0.72, 0.58, 0.52),
        'Deep M-Sparse (M = 10)': (0.72, 0.57, 0.53),
        'Deep M-Sparse (M = 20)': (0.69, 0.54, 0.51),
        'Deep M-Sparse (M = 30)': (0.73, 0.57, 0.52),
    },
    'indian_pines': {
        'TDSC': (15.55, 15.27, 15.21),
        'Tuned LISTA': (16.12, 16.05, 15.97),
        'Deep l0-Regularized': (15.20, 15.07, 15.01),
        'Deep M-Sparse (M = 10)': (13.77, 13.56, 13.52),
        'Deep M-Sparse (M = 20)': (14.67, 14.23, 14.07),
        'Deep M-Sparse (M = 30)': (15.14, 15.02, 15.00),
    },
    'coil20': {
        '(Wang et al. 2015a)': (17.75, 17.14, 17.15),
        '(Wang et al. 2015b), graph-regularized': (14.47, 14.17, 14.08),
        'Deep l0-Regularized': (14.52, 14.27, 14.06),
        'Deep M-Sparse (M = 10)': (14.59, 14.25, 14.03),
        'Deep M-Sparse (M = 20)': (14.84, 14.33, 14.15),
        'Deep M-Sparse (M = 30)': (14.77, 14.37, 14.12),
    },
    'pie': {
        '(Wang et al. 2015a)': (17.50, 17.26, 17.20),
        '(Wang et al. 2015b), graph-regularized': (16.14, 15.58, 15.09),
        'Deep l0-Regularized': (16.08, 15.72, 15.41),
        'Deep M-Sparse (M = 10)': (16.77, 16.46, 16.02),
        'Deep M-Sparse (M = 20)': (16.44, 16.23, 16.05),
        'Deep M-Sparse (M = 30)': (16.46, 16.17, 16.01),
    },
}
DATASET_TITLES = {'synthetic': 'Synthetic Gaussian mixture',
                  'mnist': 'MNIST', 'indian_pines': 'AVIRIS Indian Pines',
                  'coil20': 'COIL-20', 'pie': 'CMU PIE'}


# The augmentation of `ClassificationConfig.augment`: the mild defaults that
# the DDSE experiment uses on the same digits (rotation <= 10 degrees, scale
# within 10 %, blur <= 0.5 px, noise 0.03, clipped to [0, 1]).
AUGMENTATION = augment_lib.AugmentConfig()


# ------------------------------------------------------------------ configs


@dataclasses.dataclass(frozen=True)
class TaskConfig:
  """Settings shared by the classification and clustering experiments.

  Attributes:
    dataset: the data set (see the subclasses).
    code_dims: the code sizes p, one table column each.
    encoders: which of 'lista', 'l0', 'msparse' (and for classification
      'tdsc') to train.
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
  _encoders = ENCODERS

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


@dataclasses.dataclass(frozen=True)
class ClassificationConfig(TaskConfig):
  """One data set of the classification experiment (Tables 4-5).

  Attributes (besides `TaskConfig`'s):
    dataset: 'synthetic', 'mnist' or 'indian_pines'.
    validation_fraction: share of each class of the training set held out
      for validation (monitoring, choice of the best classifier).
    mnist_image_size: MNIST images are resized to this side (28: the
      original pixels), flattened, and standardized per image.
    max_train: use at most this many training examples (a random subset;
      None: all), before the validation split.
    max_test: use at most this many test examples (None: all).
    train_fraction: Indian Pines' training share of each class (paper: 10%).
    tdsc_lam2: TDSC's ridge weight lam2 (its l1 weight is `lam`).
    tdsc_iterations: FISTA iterations of TDSC's elastic-net codes.
    spatial_window: Indian Pines: each pixel's feature is the mean spectrum
      of the w x w window around it (1: its own spectrum; see
      `l0enc.data.load_indian_pines`).
    augment: MNIST at 28 x 28 only: distort the training images afresh in
      every epoch of end-to-end training (`AUGMENTATION`).
  """
  validation_fraction: float = 0.1
  mnist_image_size: int = 28
  max_train: int | None = None
  max_test: int | None = None
  train_fraction: float = 0.1
  tdsc_lam2: float = 0.1
  tdsc_iterations: int = 100
  spatial_window: int = 1
  augment: bool = False

  _datasets = CLASSIFICATION_DATASETS
  _encoders = CLASSIFICATION_ENCODERS

  def __post_init__(self):
    super().__post_init__()
    if not 0 < self.validation_fraction < 1:
      raise ValueError('validation_fraction must be in (0, 1), got '
                       f'{self.validation_fraction}.')
    validation.check_int_in_range('mnist_image_size', self.mnist_image_size,
                                  4, 28)
    for name in ('max_train', 'max_test'):
      if getattr(self, name) is not None:
        validation.check_int_in_range(name, getattr(self, name), 2, 2**31 - 1)
    if not 0 < self.train_fraction < 1:
      raise ValueError('train_fraction must be in (0, 1), got '
                       f'{self.train_fraction}.')
    validation.check_positive('tdsc_lam2', self.tdsc_lam2)
    validation.check_int_in_range('tdsc_iterations', self.tdsc_iterations, 1,
                                  100_000)
    data_lib.check_spatial_window(self.spatial_window)
    if self.augment and (self.dataset != 'mnist' or
                         self.mnist_image_size != 28):
      raise ValueError('augment distorts 28 x 28 digits: it needs dataset '
                       f"'mnist' with mnist_image_size 28, got "
                       f'{self.dataset!r} at {self.mnist_image_size}.')
    if self.augment and self.whitening_epsilon is not None:
      raise ValueError('augment and whitening_epsilon cannot be combined '
                       '(the distorted images would need whitening every '
                       'epoch); give one of them.')


@dataclasses.dataclass(frozen=True)
class ClusteringConfig(TaskConfig):
  """One data set of the clustering experiment (Tables 6-7).

  Attributes (besides `TaskConfig`'s):
    dataset: 'synthetic', 'coil20' or 'pie'.
    batch_size: larger than for classification: the loss estimates the
      cluster marginal on each batch, which needs several samples per
      cluster.
    head_weight_decay: the regularizer of regularized information
      maximization.
    marginal_weight: gamma of `tasks.information_maximization_loss`.
    kmeans_restarts: k-means++ restarts of every k-means.
    kmeans_iterations: Lloyd iterations of every k-means.
  """
  batch_size: int = 256
  head_weight_decay: float = 1e-4
  marginal_weight: float = 1.0
  kmeans_restarts: int = 10
  kmeans_iterations: int = 100

  _datasets = CLUSTERING_DATASETS

  def __post_init__(self):
    super().__post_init__()
    validation.check_nonnegative('marginal_weight', self.marginal_weight)
    validation.check_int_in_range('kmeans_restarts', self.kmeans_restarts, 1,
                                  10_000)
    validation.check_int_in_range('kmeans_iterations', self.kmeans_iterations,
                                  1, 100_000)


class Unit(NamedTuple):
  """One trained model: an encoder kind at one code size (and M)."""
  encoder: str
  code_dim: int
  m: int | None = None

  @property
  def name(self) -> str:
    m = '' if self.m is None else f'_m{self.m}'
    return f'{self.encoder}{m}_p{self.code_dim}'

  @property
  def row(self) -> str:
    return row_name(self.encoder, self.m)


def row_name(method: str, m: int | None = None) -> str:
  """The paper's row label of a method."""
  return {'tdsc': 'TDSC', 'lista': 'Tuned LISTA',
          'l0': 'Deep l0-Regularized',
          'msparse': f'Deep M-Sparse (M = {m})',
          'kmeans_input': 'k-means on the inputs (reference)',
          'kmeans_codes': 'k-means on the l1 codes (reference)'}[method]


# --------------------------------------------------------------------- data


class ClassificationData(NamedTuple):
  """Standardized signals `(N, n)` and int64 labels of the three splits.

  `train_images` are the training images `(N, 28, 28)` in [0, 1] that
  `x_train` was made from, kept for augmentation (None without it).
  """
  x_train: np.ndarray
  y_train: np.ndarray
  x_validation: np.ndarray
  y_validation: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int
  description: str
  train_images: np.ndarray | None = None


class ClusteringData(NamedTuple):
  """Standardized signals `(N, n)` and their int64 labels (for scoring)."""
  x: np.ndarray
  y: np.ndarray
  num_clusters: int
  description: str


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


def _subset(rng: np.random.Generator, size: int | None,
            count: int) -> np.ndarray:
  if size is None or size >= count:
    return np.arange(count)
  return np.sort(rng.permutation(count)[:size])


def load_classification_data(config: ClassificationConfig
                             ) -> ClassificationData:
  """The configured data set, preprocessed and split (see the module doc)."""
  rng = np.random.default_rng(config.seed)
  train_images = None
  if config.dataset == 'synthetic':
    x, y = make_mixture(config.seed, config.num_synthetic, config.num_classes,
                        config.signal_dim, config.synthetic_noise)
    train_part, test_part = stratified_split(y, 0.25, config.seed + 1)
    x_train, y_train = x[train_part], y[train_part]
    x_test, y_test = x[test_part], y[test_part]
    description = (f'Gaussian mixture, {config.num_classes} classes, n = '
                   f'{config.signal_dim}, noise {config.synthetic_noise}')
  elif config.dataset == 'mnist':
    split = data_lib.load_mnist(config.data_path)
    train_part = _subset(rng, config.max_train, len(split.x_train))
    test_part = _subset(rng, config.max_test, len(split.x_test))
    x_train, x_test = [
        _mnist_pixels(images, config.mnist_image_size)
        for images in (split.x_train[train_part], split.x_test[test_part])]
    y_train, y_test = split.y_train[train_part], split.y_test[test_part]
    if config.augment:
      train_images = split.x_train[train_part]
    size = config.mnist_image_size
    description = (f'{size}x{size} pixels flattened (n = {size * size}), '
                   'zero mean and unit variance per image')
  else:
    split = data_lib.load_indian_pines(
        config.data_path, train_fraction=config.train_fraction,
        seed=config.seed, spatial_window=config.spatial_window)
    train_part = _subset(rng, config.max_train, len(split.x_train))
    test_part = _subset(rng, config.max_test, len(split.x_test))
    x_train, y_train = split.x_train[train_part], split.y_train[train_part]
    x_test, y_test = split.x_test[test_part], split.y_test[test_part]
    window = config.spatial_window
    features = ('pixel spectra' if window == 1 else
                f'mean spectra of the {window}x{window} window around each '
                'pixel')
    description = (f'{features} (n = {x_train.shape[1]} bands), each band '
                   'standardized on the training pixels; '
                   f'{config.train_fraction:.0%} of each class for training '
                   f'(stratified, seed {config.seed})')
  if config.whitening_epsilon is not None:
    x_train, x_test, note = _whiten(config, x_train, x_test)
    description += note
  fit_part, validation_part = stratified_split(
      y_train, config.validation_fraction, config.seed + 2)
  num_classes = int(max(y_train.max(), y_test.max()) + 1)
  return ClassificationData(
      x_train[fit_part], y_train[fit_part], x_train[validation_part],
      y_train[validation_part], x_test, y_test, num_classes, description,
      None if train_images is None else train_images[fit_part])


def _whiten(config: TaskConfig, x_fit: np.ndarray, *others: np.ndarray
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


def _mnist_pixels(images: np.ndarray, size: int) -> np.ndarray:
  if size == images.shape[1]:
    return standardize_rows(images)
  patches = data_lib.preprocess_patches(images, size=size, min_std=0.0)
  if not patches.keep.all():
    raise ValueError('Some MNIST images are constant after resizing.')
  return patches.patches


def load_clustering_data(config: ClusteringConfig) -> ClusteringData:
  """The configured data set, every sample standardized (module doc)."""
  if config.dataset == 'synthetic':
    x, y = make_mixture(config.seed, config.num_synthetic, config.num_classes,
                        config.signal_dim, config.synthetic_noise)
    description = (f'Gaussian mixture, {config.num_classes} clusters, n = '
                   f'{config.signal_dim}, noise {config.synthetic_noise}')
  else:
    loader = (data_lib.load_coil20 if config.dataset == 'coil20'
              else data_lib.load_pie)
    images = loader(config.data_path)
    x, y = standardize_rows(images.x), images.y
    description = (f'{len(x)} images flattened (n = {x.shape[1]}), zero mean '
                   'and unit variance per image')
  if config.whitening_epsilon is not None:
    # Clustering sees no label: all samples are its training split.
    x, note = _whiten(config, x)
    description += note
  return ClusteringData(x, y, int(y.max() + 1), description)


# ------------------------------------------------------- cached components


def _cached_arrays(path: str, compute) -> dict[str, np.ndarray]:
  if os.path.exists(path):
    return validation.load_npz(
        path, 'It is a cache: delete it and rerun to recompute it.')
  arrays = compute()
  temporary = f'{path}.tmp.npz'
  np.savez(temporary, **arrays)
  os.replace(temporary, path)
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
  return _cached_arrays(os.path.join(workdir, f'dictionary_p{code_dim}.npz'),
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
  return _cached_arrays(path, compute)['codes']


def build_encoder(config: TaskConfig, dictionary: np.ndarray, encoder: str,
                  m: int | None = None) -> nnx.Module:
  """The encoder of a unit, initialized from the dictionary (eq. 8)."""
  dictionary = jnp.asarray(dictionary)
  if encoder == 'lista':
    return models.LISTA.from_dictionary(dictionary, lam=config.lam,
                                        num_stages=config.num_stages)
  if encoder == 'l0':
    step_size = 1 / float(solvers.lipschitz_constant(dictionary))
    return models.DeepL0Encoder.from_dictionary(
        dictionary, lam=config.l0_weight(step_size), step_size=step_size,
        num_stages=config.num_stages)
  if encoder == 'tdsc':
    return tdsc.ElasticNetEncoder(dictionary, lam1=config.lam,
                                  lam2=config.tdsc_lam2,
                                  num_iterations=config.tdsc_iterations)
  return models.DeepMSparseEncoder.from_dictionary(
      dictionary, m=m, num_stages=config.num_stages)


@functools.cache
def _transformation(optimizer: str, learning_rate: float, clip_norm: float,
                    head_weight_decay: float) -> optax.GradientTransformation:
  # Cached: a new head_weight_decay object would make a new optimizer, and
  # the optimizer is part of the compiled step's static graph definition.
  decay = ((tasks.head_weight_decay(head_weight_decay),)
           if head_weight_decay else ())
  return train.make_optimizer(optimizer, learning_rate, clip_norm=clip_norm,
                              before=decay)


def _train_config(config: TaskConfig, num_epochs: int) -> train.TrainConfig:
  return train.TrainConfig(num_epochs=num_epochs,
                           batch_size=config.batch_size,
                           min_sigma=config.min_sigma)


def _history(result: train.FitResult) -> list[dict[str, Any]]:
  return [record._asdict() for record in result.history]


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
      config=_train_config(config, config.lista_pretrain_epochs),
      tx=_transformation(config.optimizer, config.learning_rate,
                         config.clip_norm, 0.0),
      metric_fn=_code_metric, x_eval=x_eval, y_eval=codes_eval,
      workdir=workdir, progress=False)
  return _history(result)


# ------------------------------------------------------------------- units


def _check_settings(config: TaskConfig, workdir: str) -> None:
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


def _cached_unit(workdir: str, name: str, compute,
                 report_only: bool = False) -> dict[str, Any] | None:
  path = os.path.join(workdir, name, 'result.json')
  if os.path.exists(path):
    logging.info('Unit %s already done: %s', name, path)
    return reporting.read_json(path)
  if report_only:
    logging.warning('Unit %s not done: left out of the report.', name)
    return None
  logging.info('Unit %s.', name)
  start = time.perf_counter()
  result = compute(os.path.join(workdir, name))
  result['seconds'] = time.perf_counter() - start
  result['device'] = jax.devices()[0].device_kind
  reporting.write_json_atomic(path, result)
  return result


def _classification_unit(config: ClassificationConfig,
                         task_data: ClassificationData, unit: Unit,
                         workdir: str, unit_dir: str) -> dict[str, Any]:
  dictionary = learned_dictionary(config, task_data.x_train, unit.code_dim,
                                  workdir)
  encoder = build_encoder(config, dictionary, unit.encoder, unit.m)
  pretrain_history = []
  if unit.encoder == 'lista':
    x_all = np.concatenate([task_data.x_train, task_data.x_validation])
    codes = l1_codes(config, x_all, dictionary, os.path.join(
        workdir, f'l1_codes_p{unit.code_dim}.npz'))
    num_fit = len(task_data.x_train)
    pretrain_history = pretrain_lista(
        config, encoder, task_data.x_train, codes[:num_fit],
        task_data.x_validation, codes[num_fit:],
        os.path.join(unit_dir, 'pretrain'))
  model = tasks.TaskModel(encoder, task_data.num_classes)
  # Before end-to-end training (for LISTA: after its code regression) too,
  # to show how the task loss changes the sparsity, and why.
  initial_nonzeros = _mean_nonzeros(train.predict(encoder, task_data.x_test))
  initial_scale = _encoder_scale(encoder)
  history = _fit_classifier(config, model, task_data,
                            os.path.join(unit_dir, 'train'))
  validation_logits = train.predict(model, task_data.x_validation)
  test_logits = train.predict(model, task_data.x_test)
  test_predictions = np.argmax(test_logits, axis=-1)
  codes = train.predict(tasks.Encoded(model), task_data.x_test)
  return {
      'unit': unit._asdict(), 'row': unit.row,
      'validation_error': float(metrics.classification_error(
          validation_logits, task_data.y_validation)),
      'test_error': float(metrics.classification_error(test_predictions,
                                                       task_data.y_test)),
      'confusion_matrix': tasks.confusion_matrix(
          test_predictions, task_data.y_test,
          task_data.num_classes).tolist(),
      'mean_test_code_nonzeros': _mean_nonzeros(codes),
      'initial_mean_test_code_nonzeros': initial_nonzeros,
      'encoder_scale': _encoder_scale(model.encoder),
      'initial_encoder_scale': initial_scale,
      'history': history, 'pretrain_history': pretrain_history}


def _fit_classifier(config: ClassificationConfig, model: tasks.TaskModel,
                    task_data: ClassificationData,
                    workdir: str) -> list[dict[str, Any]]:
  """Trains `model` with the softmax loss, resumably; its history.

  Without augmentation, one `train.fit`. With it, one `train.fit` per epoch
  with a growing `num_epochs` (fit resumes from its checkpoint): epoch e
  trains on `augment_in_chunks(fold_in(key, e), train_images)`, so a
  resumed run sees the same data as an uninterrupted one.
  """
  # With augmentation every epoch trains on other images: the checkpoint
  # identifies the data by the images before augmentation.
  data_id = checkpoint.data_fingerprint(task_data.x_train, task_data.y_train)

  def fit(x_train, num_epochs):
    return _history(train.fit(
        model, x_train, task_data.y_train,
        key=jax.random.PRNGKey(config.seed + 1),
        config=_train_config(config, num_epochs),
        tx=_transformation(config.optimizer, config.learning_rate,
                           config.clip_norm, config.head_weight_decay),
        loss_fn=tasks.softmax_cross_entropy,
        metric_fn=tasks.classification_metrics,
        x_eval=task_data.x_validation, y_eval=task_data.y_validation,
        workdir=workdir, progress=False, data_id=data_id))

  if task_data.train_images is None:
    return fit(task_data.x_train, config.num_epochs)
  augment_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 3)
  history = fit(task_data.x_train, 0)  # Restores a checkpoint, if any.
  while len(history) < config.num_epochs:
    epoch = len(history)
    images = augment_lib.augment_in_chunks(
        jax.random.fold_in(augment_key, epoch), task_data.train_images,
        AUGMENTATION)
    history = fit(standardize_rows(images), epoch + 1)
  return history


def _mean_nonzeros(codes: np.ndarray) -> float:
  return float(np.mean(np.count_nonzero(codes, axis=1)))


def _encoder_scale(encoder: nnx.Module) -> dict[str, float] | None:
  """RMS of W and mean of theta for a thresholding encoder, else None.

  A code entry `[W x + S z]_i` survives where it exceeds theta_i, so the
  codes densify when W grows faster than theta (or theta shrinks).
  """
  if not isinstance(encoder, (models.LISTA, models.DeepL0Encoder)):
    return None
  return {'input_weight_rms': float(np.sqrt(np.mean(np.square(
              encoder.input_weights[...])))),
          'mean_threshold': float(np.mean(encoder.threshold[...]))}


def _clustering_scores(assignments: np.ndarray,
                       labels: np.ndarray) -> dict[str, float]:
  return {'error': float(metrics.clustering_error(assignments, labels)),
          'nmi': float(metrics.normalized_mutual_information(assignments,
                                                             labels)),
          'clusters_used': int(len(np.unique(assignments)))}


def _kmeans_scores(config: ClusteringConfig, x: np.ndarray,
                   task_data: ClusteringData, seed_offset: int
                   ) -> tuple[dict[str, float], tasks.KMeansResult]:
  result = tasks.kmeans(
      jax.random.fold_in(jax.random.PRNGKey(config.seed), seed_offset), x,
      task_data.num_clusters, num_iterations=config.kmeans_iterations,
      num_restarts=config.kmeans_restarts)
  return (_clustering_scores(np.asarray(result.assignments), task_data.y),
          result)


def _clustering_unit(config: ClusteringConfig, task_data: ClusteringData,
                     unit: Unit, workdir: str,
                     unit_dir: str) -> dict[str, Any]:
  dictionary = learned_dictionary(config, task_data.x, unit.code_dim, workdir)
  codes_path = os.path.join(workdir, f'l1_codes_p{unit.code_dim}.npz')
  if unit.encoder == 'kmeans_codes':
    codes = l1_codes(config, task_data.x, dictionary, codes_path)
    scores, _ = _kmeans_scores(config, codes, task_data, unit.code_dim)
    return {'unit': unit._asdict(), 'row': row_name('kmeans_codes'),
            **scores}
  encoder = build_encoder(config, dictionary, unit.encoder, unit.m)
  pretrain_history = []
  if unit.encoder == 'lista':
    codes = l1_codes(config, task_data.x, dictionary, codes_path)
    pretrain_history = pretrain_lista(config, encoder, task_data.x, codes,
                                      task_data.x, codes,
                                      os.path.join(unit_dir, 'pretrain'))
  model = tasks.TaskModel(encoder, task_data.num_clusters)
  initial_codes = train.predict(encoder, task_data.x)
  initial, start = _kmeans_scores(config, initial_codes, task_data,
                                  unit.code_dim + 1)
  temperature = max(float(start.inertia) / len(task_data.x), 1e-6)
  tasks.init_cluster_head(model, start.centroids, temperature)
  fit = train.fit(
      model, task_data.x, np.zeros(len(task_data.x), np.int32),
      key=jax.random.PRNGKey(config.seed + 1),
      config=_train_config(config, config.num_epochs),
      tx=_transformation(config.optimizer, config.learning_rate,
                         config.clip_norm, config.head_weight_decay),
      loss_fn=tasks.InformationMaximizationLoss(config.marginal_weight),
      # The labels score the clustering after each epoch (learning curves);
      # the loss ignores them.
      metric_fn=tasks.clustering_metrics, x_eval=task_data.x,
      y_eval=task_data.y, workdir=os.path.join(unit_dir, 'train'),
      progress=False)
  logits = train.predict(model, task_data.x)
  scores = _clustering_scores(np.argmax(logits, axis=-1), task_data.y)
  return {'unit': unit._asdict(), 'row': unit.row, **scores,
          'initial_kmeans': initial, 'temperature': temperature,
          'history': _history(fit), 'pretrain_history': pretrain_history}


def run(config: TaskConfig, workdir: str,
        report_only: bool = False) -> dict[str, Any]:
  """Runs one data set of either experiment; returns and writes its results.

  Args:
    config: a `ClassificationConfig` or a `ClusteringConfig`.
    workdir: directory of the caches, checkpoints and results of this data
      set; it must not hold another setting (other units are welcome).
    report_only: compute nothing: report the units already finished in
      `workdir` (by this machine or another) and leave out the rest, which
      the tables show as a dash.

  Returns:
    A JSON-able dict: the config, the data, and per unit name its result
    (classification: validation and test error, test confusion matrix,
    training history; clustering: error, NMI, clusters used, the initial
    k-means, training history).
  """
  if not isinstance(config, (ClassificationConfig, ClusteringConfig)):
    raise TypeError('config must be a ClassificationConfig or a '
                    f'ClusteringConfig, got {type(config).__name__}.')
  os.makedirs(workdir, exist_ok=True)
  _check_settings(config, workdir)
  classification = isinstance(config, ClassificationConfig)
  units = {}
  if classification:
    task_data = load_classification_data(config)
    data_summary = {'num_train': len(task_data.x_train),
                    'num_validation': len(task_data.x_validation),
                    'num_test': len(task_data.x_test)}
    for unit in config.units():
      units[unit.name] = _cached_unit(
          workdir, unit.name, functools.partial(
              _classification_unit, config, task_data, unit, workdir),
          report_only)
  else:
    task_data = load_clustering_data(config)
    data_summary = {'num_samples': len(task_data.x)}
    units['kmeans_input'] = _cached_unit(
        workdir, 'kmeans_input', lambda _: {
            'unit': Unit('kmeans_input', 0)._asdict(),
            'row': row_name('kmeans_input'),
            **_kmeans_scores(config, task_data.x, task_data, 0)[0]},
        report_only)
    reference = [Unit('kmeans_codes', code_dim)
                 for code_dim in config.code_dims]
    for unit in reference + config.units():
      units[unit.name] = _cached_unit(
          workdir, unit.name, functools.partial(
              _clustering_unit, config, task_data, unit, workdir),
          report_only)
  x = task_data.x_train if classification else task_data.x
  results_path = os.path.join(workdir, RESULTS_FILE)
  device = jax.devices()[0].device_kind
  if report_only and os.path.exists(results_path):
    # The units were computed where the last full run was.
    device = reporting.read_json(results_path)['device']
  results = {
      'experiment': 'classification' if classification else 'clustering',
      'config': jsonable(config),
      'data': {'description': task_data.description,
               'signal_dim': int(x.shape[1]),
               'num_classes': (task_data.num_classes if classification
                               else task_data.num_clusters),
               **data_summary},
      'units': {name: unit for name, unit in units.items()
                if unit is not None},
      'device': device,
  }
  reporting.write_json_atomic(results_path, results)
  return results


# ------------------------------------------------------------------ reports


def _metric(result: dict[str, Any], experiment: str) -> float:
  return result['test_error' if experiment == 'classification' else 'error']


_AUGMENTATION_CAPTION = (
    'augmented afresh each epoch: rotation <= '
    f'{AUGMENTATION.max_rotation_degrees:g} degrees, scale within '
    f'{AUGMENTATION.max_scale_change:.0%}, blur <= '
    f'{AUGMENTATION.max_blur_sigma:g} px, noise '
    f'{AUGMENTATION.noise_stddev:g} (pixels in [0, 1])')


def _caption(results: dict[str, Any]) -> str:
  config, data = results['config'], results['data']
  dataset = config['dataset']
  learned_on = ('the training' if results['experiment'] == 'classification'
                else 'all the')
  train_setting = (
      f"{config['num_epochs']} epochs end to end (tuned LISTA first "
      f"{config['lista_pretrain_epochs']} epochs of l1-code regression), "
      f"batch {config['batch_size']}, {config['optimizer']} at "
      f"{config['learning_rate']:g} after clipping to norm "
      f"{config['clip_norm']:g}, HELU_sigma from 0.2 (/10 per epoch, floor "
      f"{config['min_sigma']:g}), K = {config['num_stages']} stages, "
      f'dictionary learned on {learned_on} signals (lam = {config["lam"]:g}, '
      f"{config['dictionary_steps']} steps); "
      + (_AUGMENTATION_CAPTION if config.get('augment') else 'no augmentation'))
  if config['l0_lam'] is not None:
    train_setting += (f"; Deep l0 initialized with l0 weight "
                      f"{config['l0_lam']:g}")
  if results['experiment'] == 'classification':
    if 'tdsc' in config['encoders']:
      train_setting += (f"; TDSC: elastic net with lam2 = "
                        f"{config['tdsc_lam2']:g}, {config['tdsc_iterations']}"
                        ' FISTA iterations, atoms in the unit ball')
    return (f"**{DATASET_TITLES[dataset]}: classification error (%)** on the "
            f"test set ({data['num_test']} samples) after the last epoch; "
            f"trained on {data['num_train']} samples, {data['num_validation']}"
            f" more held out for validation; {data['description']}; "
            f"{train_setting}. Ours (paper).")
  return (f"**{DATASET_TITLES[dataset]}: clustering error (%)** over all "
          f"{data['num_samples']} samples after the best matching of clusters "
          f"to classes; {data['description']}; {train_setting}; trained "
          "without labels by regularized information maximization (gamma = "
          f"{config['marginal_weight']:g}, head weight decay "
          f"{config['head_weight_decay']:g}), head initialized by k-means on "
          "the untrained codes. Ours (paper).")


def _units_by_row(results: dict[str, Any]
                  ) -> dict[str, dict[int, dict[str, Any]]]:
  """`{table row: {code size: unit result}}`, rows in the order run."""
  by_row = {}
  for result in results['units'].values():
    by_row.setdefault(result['row'], {})[result['unit']['code_dim']] = result
  return by_row


def _table_header(code_dims: Sequence[int]) -> list[str]:
  return ['method'] + [f'p = {code_dim}' for code_dim in code_dims]


def paper_table(results: dict[str, Any]) -> str:
  """One data set's table in the paper's layout: ours (paper's), in %.

  Rows: the references (paper-only rows show a dash for ours), tuned LISTA,
  Deep l0-Regularized, Deep M-Sparse per M; columns: the code sizes run.
  The paper's numbers appear beside ours at its code sizes.

  Args:
    results: the output of `run` for one data set.

  Returns:
    Markdown: a caption with the settings, then the table.
  """
  experiment = results['experiment']
  dataset = results['config']['dataset']
  code_dims = results['config']['code_dims']
  paper = PAPER_TABLES.get(dataset, {})
  by_row = _units_by_row(results)
  rows = []
  if any(code_dim in PAPER_CODE_DIMS for code_dim in code_dims):
    rows = [name for name in paper if name not in by_row]  # Paper-only rows.
  rows += list(by_row)

  def cell(row, code_dim):
    found = by_row.get(row, {})
    result = found.get(code_dim, found.get(0))  # 0: independent of p.
    ours = '—' if result is None else f'{_metric(result, experiment):.2f}'
    if row in paper and code_dim in PAPER_CODE_DIMS:
      return f'{ours} ({paper[row][PAPER_CODE_DIMS.index(code_dim)]:.2f})'
    return ours

  body = [[row] + [cell(row, code_dim) for code_dim in code_dims]
          for row in rows]
  return (_caption(results) + '\n\n' + reporting.markdown_table(
      _table_header(code_dims), body))


def _before_after_table(results: dict[str, Any], caption: str,
                        cell: Callable[[dict[str, Any]], str | None]) -> str:
  """A table of `cell(unit result)` per method and code size.

  Rows whose cells are all None (the quantity does not apply) are left out,
  and so is the whole table ('') if no row is left; a unit not run shows a
  dash.
  """
  code_dims = results['config']['code_dims']
  body = []
  for row, found in _units_by_row(results).items():
    cells = [None if found.get(code_dim) is None else cell(found[code_dim])
             for code_dim in code_dims]
    if any(value is not None for value in cells):
      body.append([row] + ['—' if value is None else value
                           for value in cells])
  if not body:
    return ''
  return caption + '\n\n' + reporting.markdown_table(
      _table_header(code_dims), body)


def nonzeros_table(results: dict[str, Any]) -> str:
  """Mean nonzeros of the test codes, before -> after end-to-end training.

  Shows whether the task loss kept the codes sparse. "Before" is the encoder
  as initialized (tuned LISTA: after its code regression); units written
  before it was recorded show the "after" value only.

  Args:
    results: the output of `run` for one classification data set.

  Returns:
    Markdown: a one-line caption, then a table with the methods as rows and
    the code sizes as columns.
  """
  def cell(result):
    after = f"{result['mean_test_code_nonzeros']:.1f}"
    before = result.get('initial_mean_test_code_nonzeros')
    return after if before is None else f'{before:.1f} → {after}'

  return _before_after_table(
      results, 'Mean nonzeros of the test codes (of p), before → after '
      'end-to-end training (one number: after only, for units run before the '
      '"before" was recorded):', cell)


def scale_table(results: dict[str, Any]) -> str:
  """How far W and theta moved in end-to-end training (thresholding rows).

  The RMS of the input weights W and the mean threshold theta, before ->
  after, for the units that recorded them (tuned LISTA and Deep l0; units
  run before they were recorded show a dash).

  Args:
    results: the output of `run` for one classification data set.

  Returns:
    Markdown: a caption, then the table; '' if no unit recorded them.
  """
  def cell(result):
    before, after = (result.get('initial_encoder_scale'),
                     result.get('encoder_scale'))
    if not before or not after:
      return None
    return ', '.join(
        f'{name} {before[key]:.2g} → {after[key]:.2g}' for name, key in
        (('W', 'input_weight_rms'), ('θ', 'mean_threshold')))

  return _before_after_table(
      results, 'Scale of the thresholding encoders, before → after end-to-end '
      'training: RMS of the input weights W, mean of the thresholds θ (a code '
      'entry survives where |W x + S z| exceeds θ):', cell)


def best_classifier(results: dict[str, Any]) -> str:
  """The unit with the lowest validation error (ties: table order)."""
  trained = {name: result for name, result in results['units'].items()
             if 'validation_error' in result}
  if not trained:
    raise ValueError(f"No unit of {results['config']['dataset']} has "
                     'finished: nothing to report yet.')
  return min(trained, key=lambda name: trained[name]['validation_error'])


def plot_learning_curves(results: Sequence[dict[str, Any]],
                         path: str) -> None:
  """Per data set and p: the monitored error and the train loss per epoch.

  Classification: validation error; clustering: clustering error of all
  samples (monitoring only). One column per (data set, p), two rows.
  """
  panels = [(result, code_dim) for result in results
            for code_dim in result['config']['code_dims']]
  figure = matplotlib.figure.Figure(figsize=(4.2 * len(panels), 6.5))
  axes = figure.subplots(2, len(panels), squeeze=False)
  for column, (result, code_dim) in enumerate(panels):
    classification = result['experiment'] == 'classification'
    top, bottom = axes[0, column], axes[1, column]
    for unit in result['units'].values():
      if unit['unit']['code_dim'] != code_dim or 'history' not in unit:
        continue
      epochs = [record['epoch'] for record in unit['history']]
      top.plot(epochs, [record['eval_metrics']['error']
                        for record in unit['history']], label=unit['row'])
      bottom.plot(epochs, [record['train_loss'] for record in unit['history']],
                  label=unit['row'])
    title = f"{DATASET_TITLES[result['config']['dataset']]}, p = {code_dim}"
    top.set(title=title, xlabel='epoch',
            ylabel=('validation error (%)' if classification else
                    'clustering error (%), monitoring'))
    bottom.set(xlabel='epoch',
               ylabel=('train cross entropy' if classification else
                       'train loss (RIM)'))
    top.legend(fontsize=7)
  figure.tight_layout()
  reporting.save_figure_atomic(figure, path, dpi=110)


def plot_confusion_matrix(results: dict[str, Any], path: str) -> str:
  """The test confusion matrix of the best classifier (by validation).

  Returns:
    The unit name drawn.
  """
  name = best_classifier(results)
  unit = results['units'][name]
  counts = np.asarray(unit['confusion_matrix'])
  # Rows normalized: the share of each true class given each prediction.
  shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
  figure = matplotlib.figure.Figure(figsize=(6, 5.2))
  axes = figure.subplots()
  image = axes.imshow(shares, cmap='Blues', vmin=0, vmax=1)
  figure.colorbar(image, ax=axes, label='share of the true class')
  if len(counts) <= 20:
    axes.set_xticks(range(len(counts)))
    axes.set_yticks(range(len(counts)))
    for (i, j), count in np.ndenumerate(counts):
      if count:
        axes.text(j, i, str(count), ha='center', va='center', fontsize=6,
                  color='white' if shares[i, j] > 0.5 else 'black')
  axes.set(xlabel='predicted class', ylabel='true class',
           title=(f"{DATASET_TITLES[results['config']['dataset']]}: "
                  f"{unit['row']}, p = {unit['unit']['code_dim']}\n"
                  f"test error {unit['test_error']:.2f}% (chosen by "
                  f"validation, {unit['validation_error']:.2f}%)"))
  figure.tight_layout()
  reporting.save_figure_atomic(figure, path, dpi=110)
  return name
