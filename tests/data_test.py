"""Tests for l0enc.data on tiny fake files; no shared data, no network."""

import gzip
import sys
import types

import chex
import numpy as np
import pytest

from l0enc import data
from l0enc import validation

_IDX_NAMES = {
    'x_train': 'train-images-idx3-ubyte',
    'y_train': 'train-labels-idx1-ubyte',
    'x_test': 't10k-images-idx3-ubyte',
    'y_test': 't10k-labels-idx1-ubyte',
}


@pytest.fixture(name='mnist_arrays')
def fixture_mnist_arrays():
  rng = np.random.default_rng(0)
  return dict(
      x_train=rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
      y_train=np.array([0, 9, 3, 3, 1], np.uint8),
      x_test=rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
      y_test=np.array([7, 2, 5], np.uint8))


def _idx_bytes(array, magic=None):
  magic = magic if magic is not None else 0x800 + array.ndim
  header = np.array([magic, *array.shape], '>u4').tobytes()
  return header + array.astype(np.uint8).tobytes()


def _write_idx_files(directory, arrays, compress):
  for name, stem in _IDX_NAMES.items():
    content = _idx_bytes(arrays[name])
    if compress:
      (directory / f'{stem}.gz').write_bytes(gzip.compress(content))
    else:
      (directory / stem).write_bytes(content)


def _assert_split_matches(split, arrays):
  for name, array in arrays.items():
    loaded = getattr(split, name)
    if name.startswith('x'):
      assert loaded.dtype == np.float32
      np.testing.assert_allclose(loaded, array / 255.0, rtol=1e-6)
    else:
      assert loaded.dtype == np.int64
      np.testing.assert_array_equal(loaded, array)


# ---------------------------------------------------------------------------
# MNIST from a directory


def test_load_mnist_from_npz(tmp_path, mnist_arrays):
  np.savez_compressed(tmp_path / 'mnist.npz', **mnist_arrays)
  _assert_split_matches(data.load_mnist(tmp_path), mnist_arrays)


@pytest.mark.parametrize('compress', [False, True])
def test_load_mnist_from_idx(tmp_path, mnist_arrays, compress):
  _write_idx_files(tmp_path, mnist_arrays, compress)
  _assert_split_matches(data.load_mnist(str(tmp_path)), mnist_arrays)


@pytest.mark.parametrize('key,replacement,message', [
    ('x_test', None, r"lacks key\(s\) \['x_test'\]"),
    ('x_train', np.zeros((5, 784), np.uint8), r'x_train must have shape'),
    ('y_train', np.zeros(4, np.uint8), r'y_train must have shape \(5,\)'),
    ('y_test', np.array([7, 2, 10], np.uint8), r'y_test must hold digits'),
])
def test_load_mnist_rejects_malformed_npz(tmp_path, mnist_arrays, key,
                                          replacement, message):
  if replacement is None:
    del mnist_arrays[key]
  else:
    mnist_arrays[key] = replacement
  np.savez(tmp_path / 'mnist.npz', **mnist_arrays)
  with pytest.raises(ValueError, match=message) as error:
    data.load_mnist(tmp_path)
  assert 'mnist.npz' in str(error.value)


def test_load_mnist_rejects_a_file_that_is_not_npz(tmp_path):
  (tmp_path / 'mnist.npz').write_bytes(b'not an archive')
  with pytest.raises(ValueError, match='mnist.npz'):
    data.load_mnist(tmp_path)


def test_load_mnist_keeps_floats_already_in_unit_range(tmp_path,
                                                       mnist_arrays):
  scaled = {name: (array / 255.0 if name.startswith('x') else array)
            for name, array in mnist_arrays.items()}
  np.savez(tmp_path / 'mnist.npz', **scaled)
  # Not divided by 255 a second time: the same split as from the bytes.
  _assert_split_matches(data.load_mnist(tmp_path), mnist_arrays)


@pytest.mark.parametrize('images, message', [
    (np.full((5, 28, 28), 2.0), r'floats in \[2.0, 2.0\]'),
    (np.full((5, 28, 28), np.nan), 'floats'),
    (np.full((5, 28, 28), 300, np.int32), 'pixel values 0..255'),
    (np.full((5, 28, 28), 'a'), 'dtype <U1'),
])
def test_load_mnist_rejects_images_in_other_units(tmp_path, mnist_arrays,
                                                  images, message):
  mnist_arrays['x_train'] = images
  np.savez(tmp_path / 'mnist.npz', **mnist_arrays)
  with pytest.raises(ValueError, match=message) as error:
    data.load_mnist(tmp_path)
  assert 'mnist.npz' in str(error.value) and 'x_train' in str(error.value)


def _damage(path, damage):
  content = path.read_bytes()
  if damage == 'truncated':
    path.write_bytes(content[:len(content) // 2])
  elif damage == 'text':
    path.write_text('this is not an archive\n')
  elif damage == 'bad_member':
    # Flip bytes inside the first compressed member: its CRC fails on read.
    middle = len(content) // 3
    path.write_bytes(content[:middle] + bytes(64) + content[middle + 64:])
  else:
    raise ValueError(damage)


@pytest.mark.parametrize('damage', ['truncated', 'text', 'bad_member',
                                    'object_array'])
@pytest.mark.parametrize('loader, name, source', [
    ('mnist', 'mnist.npz', 'mnist.npz'),
    ('coil20', 'coil20.npz', 'COIL20.mat'),
    ('pie', 'pie.npz', 'PIE_32x32.mat'),
    ('indian_pines', 'indian_pines.npz', 'Indian_pines_corrected.mat'),
])
def test_damaged_data_files_name_the_file_and_the_source(
    tmp_path, mnist_arrays, damage, loader, name, source):
  path = tmp_path / name
  rng = np.random.default_rng(0)
  arrays = {'mnist': mnist_arrays,
            'coil20': dict(x=rng.random((4, 8, 8)), y=np.arange(4)),
            'pie': dict(x=rng.random((4, 8, 8)), y=np.arange(4)),
            'indian_pines': dict(cube=rng.random((6, 6, 5)),
                                 gt=rng.integers(0, 3, (6, 6)))}[loader]
  if damage == 'object_array':
    key = next(iter(arrays))
    arrays = dict(arrays, **{key: np.array([None, 1], dtype=object)})
    np.savez(path, allow_pickle=True, **arrays)
  else:
    np.savez_compressed(path, **arrays)
    _damage(path, damage)
  load = {'mnist': lambda: data.load_mnist(tmp_path),
          'coil20': lambda: data.load_coil20(path),
          'pie': lambda: data.load_pie(path),
          'indian_pines': lambda: data.load_indian_pines(path)}[loader]
  with pytest.raises(validation.DamagedFileError,
                     match=f'{name} is damaged') as error:
    load()
  assert str(path) in str(error.value) and source in str(error.value)


@pytest.mark.parametrize('corruption,message', [
    ('magic', 'magic number'),
    ('truncated', 'holds'),
    ('header', 'too short'),
    ('bad_gzip', 'Cannot read'),
])
def test_load_mnist_rejects_malformed_idx(tmp_path, mnist_arrays, corruption,
                                          message):
  _write_idx_files(tmp_path, mnist_arrays, compress=False)
  path = tmp_path / _IDX_NAMES['y_test']
  if corruption == 'magic':
    path.write_bytes(_idx_bytes(mnist_arrays['y_test'], magic=0x803))
  elif corruption == 'truncated':
    path.write_bytes(path.read_bytes()[:-1])
  elif corruption == 'header':
    path.write_bytes(b'\x00\x00\x08')
  else:
    path.unlink()
    (tmp_path / f'{path.name}.gz').write_bytes(b'not gzip')
  with pytest.raises(ValueError, match=message) as error:
    data.load_mnist(tmp_path)
  assert path.name in str(error.value)


def test_load_mnist_rejects_idx_with_mismatched_counts(tmp_path, mnist_arrays):
  mnist_arrays['y_train'] = mnist_arrays['y_train'][:4]
  _write_idx_files(tmp_path, mnist_arrays, compress=True)
  with pytest.raises(ValueError, match=r'y_train must have shape \(5,\)'):
    data.load_mnist(tmp_path)


def _assert_says_how_to_get_mnist(message):
  assert 'l0enc[tfds]' in message
  assert 'mnist.npz' in message and 'https://' in message
  assert 'train-images-idx3-ubyte' in message


def test_load_mnist_missing_directory_files(tmp_path, mnist_arrays):
  _write_idx_files(tmp_path, mnist_arrays, compress=False)
  (tmp_path / _IDX_NAMES['x_test']).unlink()
  with pytest.raises(FileNotFoundError) as error:
    data.load_mnist(tmp_path)
  _assert_says_how_to_get_mnist(str(error.value))


# ---------------------------------------------------------------------------
# MNIST through tensorflow-datasets (faked)


class _FakeSource:
  """Mimics a tfds data source: records of dicts with an HxWx1 image."""

  def __init__(self, images, labels):
    self._records = [{'image': image[..., None], 'label': np.int64(label)}
                     for image, label in zip(images, labels)]

  def __len__(self):
    return len(self._records)

  def __getitems__(self, keys):
    return [self._records[key] for key in keys]


def _install_fake_tfds(monkeypatch, data_source, load):
  module = types.ModuleType('tensorflow_datasets')
  module.data_source = data_source
  module.load = load
  module.as_numpy = lambda tree: tree
  monkeypatch.setitem(sys.modules, 'tensorflow_datasets', module)


def _raise(error):
  def raiser(*args, **kwargs):
    del args, kwargs
    raise error
  return raiser


def test_load_mnist_without_tfds_installed(monkeypatch):
  # A None entry in sys.modules makes `import` raise ImportError.
  monkeypatch.setitem(sys.modules, 'tensorflow_datasets', None)
  with pytest.raises(FileNotFoundError) as error:
    data.load_mnist()
  _assert_says_how_to_get_mnist(str(error.value))


@pytest.mark.parametrize('data_source', [
    lambda name: {},  # No prepared data: tfds only warns.
    _raise(RuntimeError('array_record not installed')),
])
def test_load_mnist_when_tfds_has_no_data(monkeypatch, data_source):
  _install_fake_tfds(monkeypatch, data_source,
                     _raise(AssertionError('Dataset mnist: dataset not found')))
  with pytest.raises(FileNotFoundError) as error:
    data.load_mnist()
  _assert_says_how_to_get_mnist(str(error.value))


def test_load_mnist_from_tfds_data_source(monkeypatch, mnist_arrays):
  sources = {
      split: _FakeSource(mnist_arrays[f'x_{split}'], mnist_arrays[f'y_{split}'])
      for split in ('train', 'test')}
  _install_fake_tfds(monkeypatch, lambda name: sources,
                     _raise(AssertionError('load must not be needed')))
  _assert_split_matches(data.load_mnist(), mnist_arrays)


def test_load_mnist_from_tfds_load(monkeypatch, mnist_arrays):
  def load(name, split, batch_size, as_supervised, download):
    assert (name, split, batch_size, as_supervised, download) == (
        'mnist', ['train', 'test'], -1, True, True)
    return [(mnist_arrays[f'x_{part}'][..., None], mnist_arrays[f'y_{part}'])
            for part in split]
  _install_fake_tfds(monkeypatch, lambda name: {}, load)
  _assert_split_matches(data.load_mnist(), mnist_arrays)


# ---------------------------------------------------------------------------
# Preprocessing


def test_preprocess_patches_normalizes_and_drops_flat_images():
  rng = np.random.default_rng(0)
  images = rng.random((6, 28, 28)).astype(np.float32)
  images[1] = 0.5  # Constant: cannot be normalized.
  images[4] = 0.5 + 0.01 * rng.standard_normal((28, 28))  # Low contrast.
  labels = np.arange(6)

  result = data.preprocess_patches(images, size=16, min_std=0.005)

  np.testing.assert_array_equal(result.keep, [1, 0, 1, 1, 0, 1])
  np.testing.assert_array_equal(labels[result.keep], [0, 2, 3, 5])
  chex.assert_shape(result.patches, (4, 256))
  assert result.patches.dtype == np.float32
  np.testing.assert_allclose(result.patches.mean(axis=1), 0, atol=1e-5)
  np.testing.assert_allclose(np.sum(result.patches**2, axis=1), 256, rtol=1e-5)


def test_preprocess_patches_default_min_std_keeps_digit_like_images():
  images = np.zeros((2, 28, 28), np.float32)
  images[:, 6:22, 12:16] = 1.0  # A thick vertical stroke.
  images[1] *= 0.2  # The same stroke, faint: std falls below 0.1.
  np.testing.assert_array_equal(data.preprocess_patches(images).keep,
                                [True, False])


def test_preprocess_patches_is_invariant_to_brightness_and_contrast():
  images = np.random.default_rng(1).random((3, 20, 24))
  reference = data.preprocess_patches(images, size=8, min_std=0)
  rescaled = data.preprocess_patches(3 * images + 7, size=8, min_std=0)
  np.testing.assert_allclose(rescaled.patches, reference.patches, atol=1e-4)


def test_preprocess_patches_resizes_smoothly():
  # A horizontal ramp stays a horizontal, increasing ramp after resizing.
  ramp = np.broadcast_to(np.arange(28, dtype=np.float32), (1, 28, 28))
  patch = data.preprocess_patches(ramp, size=16).patches.reshape(16, 16)
  np.testing.assert_allclose(patch, np.broadcast_to(patch[0], (16, 16)),
                             atol=1e-5)
  assert np.all(np.diff(patch[0]) > 0)


@pytest.mark.parametrize('kwargs,message', [
    (dict(images=np.ones((28, 28))), 'images must have shape'),
    (dict(images=np.ones((2, 28, 28)), size=0), 'size'),
    (dict(images=np.ones((2, 28, 28)), min_std=-1.0), 'min_std'),
    (dict(images=np.full((2, 28, 28), np.nan)), 'images'),
])
def test_preprocess_patches_rejects_bad_input(kwargs, message):
  with pytest.raises(ValueError, match=message):
    data.preprocess_patches(**kwargs)


# ---------------------------------------------------------------------------
# COIL-20 and PIE


@pytest.mark.parametrize('loader', [data.load_coil20, data.load_pie])
def test_load_labelled_images(tmp_path, loader):
  rng = np.random.default_rng(0)
  images = rng.random((6, 4, 5))
  labels = np.array([3.0, 1.0, 1.0, 7.0, 3.0, 7.0])  # As stored in .mat files.
  np.savez(tmp_path / 'images.npz', x=images, y=labels)

  result = loader(tmp_path / 'images.npz')

  assert result.x.dtype == np.float32 and result.y.dtype == np.int64
  np.testing.assert_allclose(result.x, images, rtol=1e-6)
  np.testing.assert_array_equal(result.y, [1, 0, 0, 2, 1, 2])


@pytest.mark.parametrize('loader,source', [
    (data.load_coil20, 'COIL20.mat'), (data.load_pie, 'PIE_32x32.mat')])
def test_load_labelled_images_missing_file(tmp_path, loader, source):
  with pytest.raises(FileNotFoundError, match=source):
    loader(tmp_path / 'absent.npz')


@pytest.mark.parametrize('arrays,message', [
    (dict(x=np.ones((3, 4, 4))), r"lacks key\(s\) \['y'\]"),
    (dict(x=np.ones(3), y=np.zeros(3)), 'x must have shape'),
    (dict(x=np.ones((3, 4, 4)), y=np.zeros(2)), r'y must have shape \(3,\)'),
    (dict(x=np.full((3, 4), np.nan), y=np.zeros(3)), 'NaN'),
    (dict(x=np.ones((3, 4)), y=np.array([0.5, 1, 2])), 'integer labels'),
])
def test_load_labelled_images_rejects_malformed_npz(tmp_path, arrays, message):
  np.savez(tmp_path / 'coil20.npz', **arrays)
  with pytest.raises(ValueError, match=message) as error:
    data.load_coil20(tmp_path / 'coil20.npz')
  assert 'coil20.npz' in str(error.value)


# ---------------------------------------------------------------------------
# Indian Pines


def _write_fake_indian_pines(path, ground_truth=None, cube=None):
  rng = np.random.default_rng(0)
  if ground_truth is None:
    # 60 pixels of class 1, 30 of class 2, one of class 16, 29 unlabelled.
    ground_truth = rng.permutation(
        np.repeat(np.array([1, 2, 16, 0], np.uint8), [60, 30, 1, 29])
    ).reshape(12, 10)
  if cube is None:
    cube = rng.integers(955, 9604, ground_truth.shape + (7,), dtype=np.uint16)
    cube[..., 0] = np.arange(ground_truth.size).reshape(ground_truth.shape)
  np.savez(path, cube=cube, gt=ground_truth)
  return cube, ground_truth


def test_load_indian_pines_split_and_standardization(tmp_path):
  path = tmp_path / 'indian_pines.npz'
  cube, ground_truth = _write_fake_indian_pines(path)

  split = data.load_indian_pines(path, train_fraction=0.2, seed=3)

  chex.assert_shape([split.x_train, split.x_test], (None, 7))
  assert split.x_train.dtype == np.float32 and split.y_train.dtype == np.int64
  np.testing.assert_array_equal(
      np.bincount(split.y_train, minlength=16)[[0, 1, 15]], [12, 6, 1])
  np.testing.assert_array_equal(
      np.bincount(split.y_test, minlength=16)[[0, 1, 15]], [48, 24, 0])
  # Band 0 holds each pixel's raster index, so sorting on it recovers which
  # pixel every row came from (standardization is increasing per band).
  rows = np.concatenate([split.x_train, split.x_test])
  labelled_pixels = np.flatnonzero(ground_truth.ravel() > 0)
  pixel_of_row = np.empty(len(rows), int)
  pixel_of_row[np.argsort(rows[:, 0])] = labelled_pixels
  train_pixels = pixel_of_row[:len(split.x_train)]
  assert np.all(np.diff(train_pixels) > 0)  # Raster order.
  np.testing.assert_array_equal(
      np.concatenate([split.y_train, split.y_test]),
      ground_truth.ravel()[pixel_of_row] - 1)
  spectra = cube.reshape(-1, 7).astype(np.float64)
  train_spectra = spectra[train_pixels]
  np.testing.assert_allclose(
      rows, (spectra[pixel_of_row] - train_spectra.mean(0))
      / train_spectra.std(0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('window', [1, 3, 5])
def test_window_mean_against_a_loop(window):
  image = np.random.default_rng(0).normal(size=(6, 7, 3))
  radius = window // 2
  expected = np.array(
      [[image[max(0, i - radius):i + radius + 1,
              max(0, j - radius):j + radius + 1].mean((0, 1))
        for j in range(7)] for i in range(6)])
  np.testing.assert_allclose(data.window_mean(image, window), expected,
                             atol=1e-12)


def test_load_indian_pines_spatial_window(tmp_path):
  path = tmp_path / 'indian_pines.npz'
  cube, ground_truth = _write_fake_indian_pines(path)
  pixels = data.load_indian_pines(path, seed=3)
  windowed = data.load_indian_pines(path, seed=3, spatial_window=3)
  # The same pixels and labels; the features are the window means,
  # standardized on the training pixels.
  chex.assert_trees_all_equal(pixels.y_train, windowed.y_train)
  chex.assert_trees_all_equal(pixels.y_test, windowed.y_test)
  # Band 0 of the plain cube is the raster index: it names the training
  # pixels (raster order, as in the windowed split).
  labelled = np.flatnonzero(ground_truth.ravel() > 0)
  rank = np.argsort(np.argsort(
      np.concatenate([pixels.x_train[:, 0], pixels.x_test[:, 0]])))
  is_train = np.zeros(len(labelled), bool)
  is_train[rank[:len(pixels.x_train)]] = True
  features = data.window_mean(cube.astype(np.float64), 3).reshape(
      -1, cube.shape[2])[labelled]
  mean, std = features[is_train].mean(0), features[is_train].std(0)
  np.testing.assert_allclose(windowed.x_train,
                             (features[is_train] - mean) / std, rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_allclose(windowed.x_test,
                             (features[~is_train] - mean) / std, rtol=1e-5,
                             atol=1e-5)
  for window in (0, 2):
    with pytest.raises(ValueError, match='spatial_window'):
      data.load_indian_pines(path, spatial_window=window)


def test_load_indian_pines_is_deterministic_per_seed(tmp_path):
  path = tmp_path / 'indian_pines.npz'
  _write_fake_indian_pines(path)
  first, again = data.load_indian_pines(path), data.load_indian_pines(path)
  other = data.load_indian_pines(path, seed=1)
  chex.assert_trees_all_equal(first, again)
  assert not np.array_equal(first.x_train, other.x_train)


def test_load_indian_pines_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match='Indian_pines_corrected.mat'):
    data.load_indian_pines(tmp_path / 'absent.npz')


@pytest.mark.parametrize('arrays,message', [
    (dict(cube=np.ones((4, 4, 3))), r"lacks key\(s\) \['gt'\]"),
    (dict(cube=np.ones((4, 4, 3)), gt=np.ones((4, 5))), 'cube must have'),
    (dict(cube=np.ones((4, 4)), gt=np.ones((4, 4))), 'cube must have'),
    (dict(cube=np.full((4, 4, 3), np.nan), gt=np.ones((4, 4))), 'NaN'),
    (dict(cube=np.ones((4, 4, 3)), gt=np.zeros((4, 4))), 'no labelled'),
    (dict(cube=np.ones((4, 4, 3)), gt=np.full((4, 4), 1.5)), 'integer'),
])
def test_load_indian_pines_rejects_malformed_npz(tmp_path, arrays, message):
  np.savez(tmp_path / 'pines.npz', **arrays)
  with pytest.raises(ValueError, match=message) as error:
    data.load_indian_pines(tmp_path / 'pines.npz')
  assert 'pines.npz' in str(error.value)


@pytest.mark.parametrize('kwargs,message', [
    (dict(train_fraction=0.0), 'train_fraction'),
    (dict(train_fraction=1.0), 'train_fraction'),
    (dict(seed=-1), 'seed'),
    (dict(seed=1.5), 'seed'),
])
def test_load_indian_pines_rejects_bad_arguments(tmp_path, kwargs, message):
  path = tmp_path / 'indian_pines.npz'
  _write_fake_indian_pines(path)
  with pytest.raises(ValueError, match=message):
    data.load_indian_pines(path, **kwargs)
