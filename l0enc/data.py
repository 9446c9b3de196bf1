"""Dataset loaders and the paper's MNIST preprocessing.

Loaders return NumPy arrays (float32 features, int64 labels) in NamedTuples and
never touch the network themselves: MNIST comes from a local directory or,
when it is installed, from tensorflow-datasets; COIL-20, CMU PIE and Indian
Pines come from local `.npz` files. Every missing or malformed file is a clear
error that names the file and says where to get it. Synthetic problems
(signals from known sparse codes) are in `l0enc.synthetic`.
"""

import gzip
import logging
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from l0enc import validation

# The environment variable the experiments take their default --data_dir
# from (a directory with mnist.npz, coil20.npz, indian_pines.npz, ...).
DATA_DIR_ENV = 'L0ENC_DATA_DIR'
_MNIST_IMAGE_SHAPE = (28, 28)
_MNIST_NPZ_URL = (
    'https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz')
# Stem of the IDX file for each array; each may also be gzip-compressed.
_MNIST_IDX_FILES = {
    'x_train': 'train-images-idx3-ubyte',
    'y_train': 'train-labels-idx1-ubyte',
    'x_test': 't10k-images-idx3-ubyte',
    'y_test': 't10k-labels-idx1-ubyte',
}
# IDX magic numbers: two zero bytes, 0x08 (unsigned byte data), number of dims.
_IDX_MAGIC = {1: 0x00000801, 3: 0x00000803}
_MNIST_HELP = (
    'MNIST was not found. Either install the tfds extra '
    '(`pip install l0enc[tfds]`) so that tensorflow-datasets can download it, '
    f'or pass --data_dir pointing to a directory with mnist.npz (from '
    f'{_MNIST_NPZ_URL}) or with the four IDX files '
    f'{", ".join(_MNIST_IDX_FILES.values())} (optionally .gz) from '
    'http://yann.lecun.com/exdb/mnist/.')
_COIL20_SOURCE = (
    'Get COIL20.mat (32x32) from '
    'http://www.cad.zju.edu.cn/home/dengcai/Data/MLData.html and save `fea` '
    'as x (reshaped to (1440, 32, 32), column-major) and `gnd` as y with '
    'np.savez_compressed.')
_PIE_SOURCE = (
    'Get PIE_32x32.mat from '
    'http://www.cad.zju.edu.cn/home/dengcai/Data/MLData.html and save `fea` '
    'as x (images) and `gnd` as y (labels) with np.savez_compressed.')
_INDIAN_PINES_SOURCE = (
    'Get Indian_pines_corrected.mat and Indian_pines_gt.mat from '
    'https://www.ehu.eus/ccwintco/index.php/'
    'Hyperspectral_Remote_Sensing_Scenes and save them as cube '
    '(145, 145, 200) and gt (145, 145) with np.savez_compressed.')


def default_data_dir() -> str | None:
  """`$L0ENC_DATA_DIR`, or None when it is unset or empty.

  None makes `load_mnist` ask tensorflow-datasets; the other data sets need
  a path then.
  """
  return os.environ.get(DATA_DIR_ENV) or None


class Split(NamedTuple):
  """A train/test split of features and integer labels.

  Attributes:
    x_train: float32 training features, one sample per leading index.
    y_train: int64 training labels, shape (num_train,).
    x_test: float32 test features.
    y_test: int64 test labels, shape (num_test,).
  """
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray


class LabelledImages(NamedTuple):
  """Images with integer labels, for the clustering experiments.

  Attributes:
    x: float32 images, shape (num_samples, height, width) or
      (num_samples, num_features) as stored.
    y: int64 labels in 0..num_classes-1, shape (num_samples,).
  """
  x: np.ndarray
  y: np.ndarray


class Patches(NamedTuple):
  """Preprocessed, flattened images and which inputs survived.

  Attributes:
    patches: float32, shape (num_kept, size * size); each row has zero mean
      and unit variance, so its squared norm is size * size.
    keep: bool, shape (num_images,); `labels[keep]` follows `patches`.
  """
  patches: np.ndarray
  keep: np.ndarray


# ----------------------------------------------------------------------------
# MNIST


def load_mnist(data_dir: str | os.PathLike | None = None) -> Split:
  """Loads MNIST (60k train / 10k test, the official split and order).

  With `data_dir`, reads `<data_dir>/mnist.npz` (keys x_train, y_train,
  x_test, y_test) if present, else the four IDX files (each plain or `.gz`).
  Without it, asks tensorflow-datasets (installed with `l0enc[tfds]`), which
  reads a prepared copy or downloads one.

  Args:
    data_dir: optional directory holding mnist.npz or the four IDX files.

  Returns:
    A `Split` with images of shape (num, 28, 28), float32 scaled to [0, 1],
    and int64 labels in 0..9. Integer images (the official 0..255) are
    divided by 255; float images must already lie in [0, 1] and are kept.

  Raises:
    FileNotFoundError: if no source has the data; the message says how to get
      it.
    ValueError: if a file is malformed; the message names the file.
  """
  if data_dir is None:
    found = _mnist_from_tfds()
  else:
    found = _mnist_from_directory(os.fspath(data_dir))
  if found is None:
    raise FileNotFoundError(
        _MNIST_HELP if data_dir is None else f'{_MNIST_HELP} ({data_dir!r} '
        'has neither mnist.npz nor the four IDX files.)')
  source, arrays = found
  _check_mnist_arrays(source, arrays)
  return Split(
      **{name: (_mnist_intensities(source, name, array)
                if name.startswith('x') else array.astype(np.int64))
         for name, array in arrays.items()})


def _mnist_intensities(source: str, name: str,
                       images: np.ndarray) -> np.ndarray:
  """float32 images in [0, 1]: bytes divided by 255, floats kept as they are.

  A copy of MNIST saved after scaling holds floats in [0, 1]; dividing those
  by 255 again would silently give near-black images.
  """
  if not (np.issubdtype(images.dtype, np.integer) or
          np.issubdtype(images.dtype, np.floating)):
    raise ValueError(f'{source}: {name} has dtype {images.dtype}; expected '
                     'uint8 pixels 0..255 or floats in [0, 1].')
  if images.size == 0:
    return images.astype(np.float32)
  low, high = images.min(), images.max()
  if np.issubdtype(images.dtype, np.integer):
    if low < 0 or high > 255:
      raise ValueError(f'{source}: {name} must hold pixel values 0..255, got '
                       f'range [{low}, {high}].')
    return images.astype(np.float32) / 255.0
  if not (np.isfinite(low) and np.isfinite(high) and 0 <= low and high <= 1):
    raise ValueError(
        f'{source}: {name} holds floats in [{low}, {high}]; expected uint8 '
        'pixels 0..255 (the official files) or floats already scaled to '
        '[0, 1].')
  return images.astype(np.float32)


def _mnist_from_directory(
    data_dir: str) -> tuple[str, dict[str, np.ndarray]] | None:
  """Returns (source name, raw arrays) from mnist.npz or IDX files, or None."""
  npz_path = os.path.join(data_dir, 'mnist.npz')
  if os.path.exists(npz_path):
    return npz_path, dict(zip(_MNIST_IDX_FILES, _read_npz(
        npz_path, tuple(_MNIST_IDX_FILES), _MNIST_HELP)))
  idx_paths = {name: _find_file(data_dir, stem)
               for name, stem in _MNIST_IDX_FILES.items()}
  if None in idx_paths.values():
    return None
  arrays = {name: _read_idx(path, ndim=1 if name.startswith('y') else 3)
            for name, path in idx_paths.items()}
  return f'the MNIST IDX files in {data_dir}', arrays


def _find_file(directory: str, stem: str) -> str | None:
  for path in (os.path.join(directory, stem),
               os.path.join(directory, stem + '.gz')):
    if os.path.exists(path):
      return path
  return None


def _read_idx(path: str, ndim: int) -> np.ndarray:
  """Parses an unsigned-byte IDX file (plain or gzip) with `ndim` dimensions."""
  opener = gzip.open if path.endswith('.gz') else open
  try:
    with opener(path, 'rb') as file:
      content = file.read()
  except (OSError, EOFError) as error:  # A corrupt .gz fails on read.
    raise ValueError(f'Cannot read IDX file {path}: {error}') from error
  header_size = 4 * (1 + ndim)
  if len(content) < header_size:
    raise ValueError(f'IDX file {path} is too short for its header '
                     f'({len(content)} bytes).')
  magic, *shape = np.frombuffer(content[:header_size], dtype='>u4').tolist()
  if magic != _IDX_MAGIC[ndim]:
    raise ValueError(f'IDX file {path} has magic number {magic:#010x}, '
                     f'expected {_IDX_MAGIC[ndim]:#010x}.')
  data = np.frombuffer(content[header_size:], dtype=np.uint8)
  if data.size != np.prod(shape):
    raise ValueError(f'IDX file {path} holds {data.size} values, but its '
                     f'header says shape {tuple(shape)}.')
  return data.reshape(shape)


def _mnist_from_tfds() -> tuple[str, dict[str, np.ndarray]] | None:
  """Returns (source name, raw arrays) via tensorflow-datasets, or None."""
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  # `data_source` reads an array_record build without TensorFlow; `load` also
  # reads tfrecord builds and can download, but needs TensorFlow.
  for read in (_read_tfds_data_source, _read_tfds_load):
    try:
      arrays = read(tfds)
    # tfds reports missing data in many ways: AssertionError from `load`
    # with download=False, DatasetNotFoundError, ImportError without
    # TensorFlow, network errors while downloading.
    except Exception as error:  # pylint: disable=broad-exception-caught
      logging.info('tensorflow-datasets could not provide MNIST via %s: %r',
                   read.__name__, error)
      continue
    if arrays is not None:
      return 'tensorflow-datasets mnist', arrays
  return None


def _read_tfds_data_source(tfds: Any) -> dict[str, np.ndarray] | None:
  sources = tfds.data_source('mnist')
  # Without prepared data this is an empty dict and only a warning.
  if not sources:
    return None
  arrays = {}
  for split in ('train', 'test'):
    source = sources[split]
    records = source.__getitems__(list(range(len(source))))
    arrays[f'x_{split}'] = np.stack([record['image'] for record in records])
    arrays[f'y_{split}'] = np.array([record['label'] for record in records])
  return _squeeze_channel(arrays)


def _read_tfds_load(tfds: Any) -> dict[str, np.ndarray]:
  (x_train, y_train), (x_test, y_test) = tfds.as_numpy(tfds.load(
      'mnist', split=['train', 'test'], batch_size=-1, as_supervised=True,
      download=True))
  return _squeeze_channel(
      dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test))


def _squeeze_channel(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Drops tfds's channel axis: (num, 28, 28, 1) -> (num, 28, 28)."""
  return {name: (array[..., 0] if array.ndim == 4 else array)
          for name, array in arrays.items()}


def _check_mnist_arrays(source: str, arrays: dict[str, np.ndarray]) -> None:
  for split in ('train', 'test'):
    images, labels = arrays[f'x_{split}'], arrays[f'y_{split}']
    if images.ndim != 3 or images.shape[1:] != _MNIST_IMAGE_SHAPE:
      raise ValueError(f'{source}: x_{split} must have shape (num, 28, 28), '
                       f'got {images.shape}.')
    if labels.shape != images.shape[:1]:
      raise ValueError(f'{source}: y_{split} must have shape '
                       f'({images.shape[0]},) to match x_{split}, got '
                       f'{labels.shape}.')
    if labels.size and (labels.min() < 0 or labels.max() > 9):
      raise ValueError(f'{source}: y_{split} must hold digits 0..9, got '
                       f'range [{labels.min()}, {labels.max()}].')


# ----------------------------------------------------------------------------
# Preprocessing


def preprocess_patches(images: Any, size: int = 16,
                       min_std: float = 0.1) -> Patches:
  """The Deep ℓ0 Encoders paper's preprocessing of MNIST (Experiment A).

  Each image is resized to size × size with `jax.image.resize(method='linear',
  antialias=True)` (for downsampling, a triangle filter widened by the scale
  factor, so every input pixel contributes: 28 → 16 is not an integer block
  average), flattened to n = size², centred, and divided by its standard
  deviation, so every kept row has zero mean and squared norm n.

  Images whose standard deviation after resizing is at most `min_std` are
  dropped ("the patches with small standard deviations are discarded"): for
  them normalization would amplify noise. The default 0.1 is for intensities
  in [0, 1] as `load_mnist` returns them (a tenth of the full range); the
  paper gives no value. For MNIST resized to 16 × 16 the standard deviation
  ranges from 0.09 to 0.44 (median 0.25); the default drops 7 of the 60000
  training images, the faintest, thinnest strokes.

  Args:
    images: array of shape (num_images, height, width).
    size: side of the resized square image.
    min_std: non-negative threshold on the per-image standard deviation, in
      the units of `images`. Constant images are dropped even with 0.

  Returns:
    `Patches(patches, keep)`, both NumPy arrays.
  """
  if np.ndim(images) != 3:
    raise ValueError('images must have shape (num_images, height, width), '
                     f'got {np.shape(images)}.')
  size = validation.check_int_in_range('size', size, 1, 2**16)
  validation.check_nonnegative('min_std', min_std)
  validation.check_finite('images', images)
  images = jnp.asarray(images, jnp.float32)
  resized = jax.image.resize(images, (images.shape[0], size, size),
                             method='linear', antialias=True)
  flat = np.asarray(resized).reshape(images.shape[0], size * size)
  centred = flat - flat.mean(axis=1, keepdims=True)
  std = centred.std(axis=1)
  keep = std > min_std
  return Patches(patches=centred[keep] / std[keep, None], keep=keep)


# ----------------------------------------------------------------------------
# COIL-20, CMU PIE, Indian Pines


def load_coil20(path: str | os.PathLike) -> LabelledImages:
  """Loads COIL-20 (1440 images of 20 objects, 32×32, values in [0, 1]).

  Args:
    path: an `.npz` with keys `x` (images) and `y` (labels).

  Returns:
    `LabelledImages` with labels mapped to 0..num_classes-1.
  """
  return _load_labelled_images(path, _COIL20_SOURCE)


def load_pie(path: str | os.PathLike) -> LabelledImages:
  """Loads CMU PIE (or any `.npz` of images `x` and labels `y`).

  Args:
    path: an `.npz` with keys `x` (images, (num, h, w) or (num, h * w)) and
      `y` (labels).

  Returns:
    `LabelledImages` with labels mapped to 0..num_classes-1 in sorted order
    (PIE's are stored as 1..68).
  """
  return _load_labelled_images(path, _PIE_SOURCE)


def _load_labelled_images(path: str | os.PathLike,
                          source_help: str) -> LabelledImages:
  path = os.fspath(path)
  images, labels = _read_npz(path, ('x', 'y'), source_help)
  if images.ndim not in (2, 3) or images.shape[0] == 0:
    raise ValueError(f'{path}: x must have shape (num, height, width) or '
                     f'(num, features) with num > 0, got {images.shape}.')
  if labels.shape != images.shape[:1]:
    raise ValueError(f'{path}: y must have shape ({images.shape[0]},) to '
                     f'match x, got {labels.shape}.')
  validation.check_finite(f'{path}: x', images)
  _check_integer_valued(f'{path}: y', labels)
  _, class_ids = np.unique(labels, return_inverse=True)
  return LabelledImages(x=images.astype(np.float32),
                        y=class_ids.astype(np.int64))


def load_indian_pines(path: str | os.PathLike, train_fraction: float = 0.1,
                      seed: int = 0, spatial_window: int = 1) -> Split:
  """Loads the labelled pixels of Indian Pines with a stratified split.

  Each pixel's feature is its spectrum or, with `spatial_window` w > 1, the
  mean spectrum of the w x w pixels around it (those inside the image),
  the simplest spatial-spectral feature. Ground-truth labels 1..16 become
  0..15 and unlabelled pixels (0) are dropped. Each class puts
  round(train_fraction * count) of its pixels, but at least one, into the
  training set, chosen at random with `seed`. Every band
  is standardized with the mean and standard deviation of the training
  pixels, so no test statistics leak into the features.

  Args:
    path: an `.npz` with keys `cube` (rows, cols, bands), (145, 145, 200) for
      the corrected scene, and `gt` (rows, cols), values 0..16.
    train_fraction: fraction of each class used for training, in (0, 1).
    seed: seed of the NumPy generator that picks the training pixels.
    spatial_window: odd side w of the window averaged around each pixel; 1
      for the pixel's own spectrum.

  Returns:
    A `Split` of float32 pixel spectra (num, bands) and int64 labels, each
    part in raster order.
  """
  path = os.fspath(path)
  if not 0 < train_fraction < 1:
    raise ValueError(
        f'train_fraction must be in (0, 1), got {train_fraction!r}.')
  seed = validation.check_int_in_range('seed', seed, 0, 2**63 - 1)
  spatial_window = check_spatial_window(spatial_window)
  cube, ground_truth = _read_npz(path, ('cube', 'gt'), _INDIAN_PINES_SOURCE)
  if cube.ndim != 3 or ground_truth.shape != cube.shape[:2]:
    raise ValueError(f'{path}: cube must have shape (rows, cols, bands) and '
                     'gt (rows, cols), got '
                     f'{cube.shape} and {ground_truth.shape}.')
  validation.check_finite(f'{path}: cube', cube)
  _check_integer_valued(f'{path}: gt', ground_truth)
  labelled = ground_truth.ravel() > 0
  if not labelled.any():
    raise ValueError(f'{path}: gt has no labelled (non-zero) pixels.')
  cube = cube.astype(np.float64)
  if spatial_window > 1:
    cube = window_mean(cube, spatial_window)
  spectra = cube.reshape(-1, cube.shape[2])[labelled]
  labels = ground_truth.ravel()[labelled].astype(np.int64) - 1

  rng = np.random.default_rng(seed)
  is_train = np.zeros(labels.shape, bool)
  for label in np.unique(labels):
    members = np.flatnonzero(labels == label)
    num_train = max(1, round(train_fraction * members.size))
    is_train[rng.permutation(members)[:num_train]] = True

  mean = spectra[is_train].mean(axis=0)
  std = spectra[is_train].std(axis=0)
  # A band that is constant on the training pixels carries no information;
  # leave it centred instead of dividing by zero.
  standardized = ((spectra - mean) / np.where(std > 0, std, 1.0)).astype(
      np.float32)
  return Split(x_train=standardized[is_train], y_train=labels[is_train],
               x_test=standardized[~is_train], y_test=labels[~is_train])


def check_spatial_window(window: int) -> int:
  """`window` if it is an odd side in [1, 99] of a window centred on a pixel.

  Raises:
    ValueError: otherwise.
  """
  window = validation.check_int_in_range('spatial_window', window, 1, 99)
  if window % 2 == 0:
    raise ValueError(f'spatial_window must be odd (a window centred on the '
                     f'pixel), got {window}.')
  return window


def window_mean(image: np.ndarray, window: int) -> np.ndarray:
  """Mean over the `window` x `window` pixels around each pixel.

  Args:
    image: shape (rows, cols, channels).
    window: odd side of the window.

  Returns:
    An array of the same shape: at each pixel, the mean of the pixels of
    the window that lie inside the image (fewer at the borders).
  """
  radius = window // 2
  # Summed-area tables: every window sum in four lookups.
  def window_sums(values):
    padded = np.pad(values, ((radius + 1, radius), (radius + 1, radius))
                    + ((0, 0),) * (values.ndim - 2))
    table = padded.cumsum(0).cumsum(1)
    return (table[window:, window:] - table[:-window, window:]
            - table[window:, :-window] + table[:-window, :-window])
  counts = window_sums(np.ones(image.shape[:2]))
  return window_sums(image) / counts[..., None]


def _read_npz(path: str, keys: tuple[str, ...],
              source_help: str) -> list[np.ndarray]:
  """Returns the arrays under `keys` of an `.npz`, with clear errors.

  A damaged file (truncated, not an archive, object arrays) raises
  `validation.DamagedFileError` naming it and saying where to get it.
  """
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} does not exist. {source_help}')
  arrays = validation.load_npz(path, f'Fetch it again: {source_help}')
  missing = [key for key in keys if key not in arrays]
  if missing:
    raise validation.DamagedFileError(
        f'{path} lacks key(s) {missing}; it has {sorted(arrays)}. '
        f'{source_help}')
  return [arrays[key] for key in keys]


def _check_integer_valued(name: str, labels: np.ndarray) -> None:
  if not (np.issubdtype(labels.dtype, np.integer) or (
      np.issubdtype(labels.dtype, np.floating)
      and np.all(np.isfinite(labels)) and np.all(labels == np.round(labels)))):
    raise ValueError(f'{name} must hold integer labels, got dtype '
                     f'{labels.dtype}.')
