"""The classification experiment (Tables 4-5 of the l0 paper).

`ClassificationConfig`: MNIST, Indian Pines or a synthetic mixture. Every
encoder (`tasks_common`) trains with the softmax cross entropy on the
training split minus a stratified validation split; the validation error is
monitored after every epoch and picks the "best classifier" of the confusion
matrix; the test set is used once, after the last epoch. With `augment`
(MNIST only), end-to-end training sees freshly distorted training images
(`AUGMENTATION`: small rotations and scalings, blur, noise; see
`l0enc.augment`), standardized per image like the clean ones; LISTA's
l1-code regression and the dictionary use the clean images.
"""

import dataclasses
import functools
import os
from typing import Any, Callable, NamedTuple

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from l0enc import augment as augment_lib
from l0enc import checkpoint
from l0enc import data as data_lib
from l0enc import metrics
from l0enc import models
from l0enc import tasks
from l0enc import train
from l0enc import validation
from l0enc.experiments import tasks_common

DATASETS = ('synthetic', 'mnist', 'indian_pines')
ENCODERS = tasks_common.ENCODERS + ('tdsc',)

# The augmentation of `ClassificationConfig.augment`: the mild defaults that
# the DDSE experiment uses on the same digits (rotation <= 10 degrees, scale
# within 10 %, blur <= 0.5 px, noise 0.03, clipped to [0, 1]).
AUGMENTATION = augment_lib.AugmentConfig()


@dataclasses.dataclass(frozen=True)
class ClassificationConfig(tasks_common.TaskConfig):
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
    augment: MNIST at 28 x 28 only: distort every batch of end-to-end
      training afresh (`AUGMENTATION`, `augmented_stream`).
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

  _datasets = DATASETS
  _encoders = ENCODERS + tasks_common.OPTIONAL_ENCODERS

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
    x, y = tasks_common.make_mixture(
        config.seed, config.num_synthetic, config.num_classes,
        config.signal_dim, config.synthetic_noise)
    train_part, test_part = tasks_common.stratified_split(y, 0.25,
                                                          config.seed + 1)
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
    x_train, x_test, note = tasks_common.whiten(config, x_train, x_test)
    description += note
  fit_part, validation_part = tasks_common.stratified_split(
      y_train, config.validation_fraction, config.seed + 2)
  num_classes = int(max(y_train.max(), y_test.max()) + 1)
  return ClassificationData(
      x_train[fit_part], y_train[fit_part], x_train[validation_part],
      y_train[validation_part], x_test, y_test, num_classes, description,
      None if train_images is None else train_images[fit_part])


def _mnist_pixels(images: np.ndarray, size: int) -> np.ndarray:
  if size == images.shape[1]:
    return tasks_common.standardize_rows(images)
  patches = data_lib.preprocess_patches(images, size=size, min_std=0.0)
  if not patches.keep.all():
    raise ValueError('Some MNIST images are constant after resizing.')
  return patches.patches


def _classification_unit(config: ClassificationConfig,
                         task_data: ClassificationData, unit: tasks_common.Unit,
                         workdir: str, unit_dir: str) -> dict[str, Any]:
  dictionary = tasks_common.learned_dictionary(
      config, task_data.x_train, unit.code_dim, workdir)
  encoder = tasks_common.build_encoder(config, dictionary, unit.encoder, unit.m)
  pretrain_history = []
  if unit.encoder == 'lista':
    x_all = np.concatenate([task_data.x_train, task_data.x_validation])
    codes = tasks_common.l1_codes(config, x_all, dictionary, os.path.join(
        workdir, f'l1_codes_p{unit.code_dim}.npz'))
    num_fit = len(task_data.x_train)
    pretrain_history = tasks_common.pretrain_lista(
        config, encoder, task_data.x_train, codes[:num_fit],
        task_data.x_validation, codes[num_fit:],
        os.path.join(unit_dir, 'pretrain'))
  model = tasks.TaskModel(encoder, task_data.num_classes)
  # Before end-to-end training (for LISTA: after its code regression) too,
  # to show how the task loss changes the sparsity, and why.
  initial_nonzeros = tasks_common.mean_nonzeros(
      train.predict(encoder, task_data.x_test))
  initial_scale = _encoder_scale(encoder)
  history = _fit_classifier(config, model, task_data,
                            os.path.join(unit_dir, 'train'))
  validation_logits = train.predict(model, task_data.x_validation)
  test_logits = train.predict(model, task_data.x_test)
  test_predictions = np.argmax(test_logits, axis=-1)
  codes = train.predict(tasks.Encoded(model), task_data.x_test)
  return {
      'row': unit.row,
      'validation_error': float(metrics.classification_error(
          validation_logits, task_data.y_validation)),
      'test_error': float(metrics.classification_error(test_predictions,
                                                       task_data.y_test)),
      'confusion_matrix': tasks.confusion_matrix(
          test_predictions, task_data.y_test,
          task_data.num_classes).tolist(),
      'mean_test_code_nonzeros': tasks_common.mean_nonzeros(codes),
      'initial_mean_test_code_nonzeros': initial_nonzeros,
      'encoder_scale': _encoder_scale(model.encoder),
      'initial_encoder_scale': initial_scale,
      'history': history, 'pretrain_history': pretrain_history}


class AugmentedStream(NamedTuple):
  """Freshly augmented training batches, as `train.fit` takes a stream.

  Attributes:
    batch_fn: `batch_fn(step) -> (images (batch, 784), labels (batch,))`,
      pure and jittable.
    steps_per_epoch: `num_images // batch_size`.
    data_id: the fingerprint of the source images and labels (what the
      checkpoint records the data by).
  """
  batch_fn: Callable[[jax.Array], tuple[jax.Array, jax.Array]]
  steps_per_epoch: int
  data_id: str


def standardize_images(images: jax.Array) -> jax.Array:
  """`tasks_common.standardize_rows` in JAX: `(B, h, w)` to `(B, h * w)`.

  A constant image (which augmentation's noise makes improbable) maps to
  zeros instead of NaN.
  """
  flat = images.reshape(images.shape[0], -1)
  centred = flat - flat.mean(axis=1, keepdims=True)
  std = centred.std(axis=1, keepdims=True)
  return centred / jnp.where(std > 0, std, 1)


def augmented_stream(key: jax.Array, images: np.ndarray, labels: np.ndarray,
                     batch_size: int,
                     augmentation: augment_lib.AugmentConfig = AUGMENTATION
                     ) -> AugmentedStream:
  """The training stream of `augment`: every batch distorted afresh.

  Step `s` of epoch `e = s // steps_per_epoch` takes the images at positions
  `(s % steps_per_epoch) * batch_size ...` of the permutation
  `jax.random.permutation(fold_in(order_key, e), num_images)` (so an epoch
  visits each image at most once, as `train.fit` does with arrays), augments
  them with `augment_lib.augment(fold_in(augment_key, s), ...)` and
  standardizes each per image. A function of the step only: a resumed fit
  sees the batches an uninterrupted one would have.

  Args:
    key: PRNG key, split into the order key and the augmentation key.
    images: the source images `(num_images, 28, 28)` in [0, 1].
    labels: their labels `(num_images,)`.
    batch_size: images per step, at most `num_images`.
    augmentation: the distortions.

  Returns:
    The `AugmentedStream`.

  Raises:
    ValueError: images not `(N, h, w)`, labels of another length, or a
      batch size outside `[1, num_images]`.
  """
  images, labels = np.asarray(images), np.asarray(labels)
  if images.ndim != 3 or len(labels) != len(images):
    raise ValueError('images must have shape (num_images, height, width) '
                     f'and labels (num_images,), got {images.shape} and '
                     f'{labels.shape}.')
  num_images = len(images)
  validation.check_int_in_range('batch_size', batch_size, 1, num_images)
  steps_per_epoch = num_images // batch_size
  data_id = checkpoint.data_fingerprint(images, labels)
  order_key, augment_key = jax.random.split(key)
  # A Partial over the arrays: `train.fit` compiles the batches once for
  # all streams of these shapes and settings (the arrays are arguments).
  batch_fn = jax.tree_util.Partial(
      _augmented_batch_fn(num_images, batch_size, augmentation), order_key,
      augment_key, jnp.asarray(images, jnp.float32), jnp.asarray(labels))
  return AugmentedStream(batch_fn, steps_per_epoch, data_id)


@functools.cache
def _augmented_batch_fn(num_images: int, batch_size: int,
                        augmentation: augment_lib.AugmentConfig
                        ) -> Callable[..., tuple[jax.Array, jax.Array]]:
  """`augmented_stream`'s batch of a step, one function per setting."""
  steps_per_epoch = num_images // batch_size

  def batch_fn(order_key, augment_key, device_images, device_labels, step):
    order = jax.random.permutation(
        jax.random.fold_in(order_key, step // steps_per_epoch), num_images)
    indices = jax.lax.dynamic_slice_in_dim(
        order, (step % steps_per_epoch) * batch_size, batch_size)
    batch = augment_lib.augment(jax.random.fold_in(augment_key, step),
                                device_images[indices], augmentation)
    return standardize_images(batch), device_labels[indices]

  return batch_fn


def _fit_classifier(config: ClassificationConfig, model: tasks.TaskModel,
                    task_data: ClassificationData,
                    workdir: str) -> list[dict[str, Any]]:
  """Trains `model` with the softmax loss, resumably; its history.

  One `train.fit`: on the training arrays, or with augmentation on
  `augmented_stream(fold_in(PRNGKey(seed), 3), train_images, ...)`.
  """
  key = jax.random.PRNGKey(config.seed + 1)
  if task_data.train_images is None:
    x_train, y_train, stream = task_data.x_train, task_data.y_train, {}
  else:
    augmented = augmented_stream(
        jax.random.fold_in(jax.random.PRNGKey(config.seed), 3),
        task_data.train_images, task_data.y_train, config.batch_size)
    x_train, y_train = augmented.batch_fn, None
    stream = dict(steps_per_epoch=augmented.steps_per_epoch,
                  data_id=augmented.data_id)
  return tasks_common.history_dicts(train.fit(
      model, x_train, y_train, key=key,
      config=tasks_common.train_config(config, config.num_epochs),
      tx=tasks_common.transformation(
          config.optimizer, config.learning_rate, config.clip_norm,
          config.head_weight_decay),
      loss_fn=tasks.softmax_cross_entropy,
      metric_fn=tasks.classification_metrics,
      x_eval=task_data.x_validation, y_eval=task_data.y_validation,
      workdir=workdir, progress=False, **stream))


def _encoder_scale(encoder: nnx.Module) -> dict[str, float] | None:
  """RMS of W and mean of theta for a thresholding encoder, else None.

  A code entry `[W x + S z]_i` survives where it exceeds theta_i, so the
  codes densify when W grows faster than theta (or theta shrinks).
  """
  if not isinstance(encoder, (models.LISTA, models.DeepL0Encoder)):
    return None
  return {'input_weight_rms': float(np.sqrt(np.mean(np.square(
              encoder.effective_input_weights())))),
          'mean_threshold': float(np.mean(encoder.threshold[...]))}


def run(config: ClassificationConfig, workdir: str,
        report_only: bool = False) -> dict[str, Any]:
  """Runs one data set; returns and writes its results.

  Args:
    config: the data set's settings.
    workdir: directory of the caches, checkpoints and results of this data
      set; it must not hold another setting (other units are welcome).
    report_only: compute nothing: report the units already finished in
      `workdir` (by this machine or another) and leave out the rest, which
      the tables show as a dash.

  Returns:
    A JSON-able dict: the config, the data, and per unit name its result
    (validation and test error, test confusion matrix, code nonzeros and
    encoder scales before and after training, training history).
  """
  if not isinstance(config, ClassificationConfig):
    raise TypeError('config must be a ClassificationConfig, got '
                    f'{type(config).__name__}.')
  os.makedirs(workdir, exist_ok=True)
  tasks_common.check_settings(config, workdir)
  task_data = load_classification_data(config)
  units = {unit.name: tasks_common.run_task_unit(
               workdir, unit, functools.partial(
                   _classification_unit, config, task_data, unit, workdir),
               report_only)
           for unit in config.units()}
  data_summary = {'description': task_data.description,
                  'signal_dim': int(task_data.x_train.shape[1]),
                  'num_classes': task_data.num_classes,
                  'num_train': len(task_data.x_train),
                  'num_validation': len(task_data.x_validation),
                  'num_test': len(task_data.x_test)}
  return tasks_common.write_results(config, workdir, 'classification',
                                    data_summary, units, report_only)
