"""Tests of l0enc.augment: batched, keyed rotations/scalings, blur and noise."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

from l0enc import augment

ZERO = augment.AugmentConfig(0.0, 0.0, 0.0, 0.0, (0.0, 1.0))


def _images(batch=5, height=12, width=10, seed=0, border=0):
  """Random images in [0, 1], zero within `border` pixels of the edge."""
  images = np.random.default_rng(seed).uniform(size=(batch, height, width))
  if border:
    images[:, :border], images[:, -border:] = 0, 0
    images[:, :, :border], images[:, :, -border:] = 0, 0
  return jnp.asarray(images, jnp.float32)


def _blob(size=24, sigma=2.5, offset=(0.0, 0.0)):
  """A smooth Gaussian blob near the centre, far from the borders."""
  rows, cols = np.mgrid[:size, :size]
  center = (size - 1) / 2
  return np.exp(-((rows - center - offset[0])**2 +
                  (cols - center - offset[1])**2) / (2 * sigma**2))


@pytest.mark.parametrize('shape,dtype', [((1, 8, 8), jnp.float32),
                                         ((4, 12, 10), jnp.float32),
                                         ((3, 8, 8), jnp.bfloat16)])
def test_shapes_and_dtypes(shape, dtype):
  images = jnp.asarray(np.random.default_rng(0).uniform(size=shape), dtype)
  key = jax.random.key(0)
  outputs = [augment.augment(key, images),
             augment.rotate_and_scale(images, 0.1, 1.1),
             augment.gaussian_blur(images, 0.7),
             augment.add_gaussian_noise(key, images, 0.1)]
  chex.assert_shape(outputs, shape)
  chex.assert_type(outputs, dtype)
  chex.assert_tree_all_finite(outputs)
  params = augment.random_params(key, shape[0])
  chex.assert_shape(list(params), (shape[0],))


def test_chunked_matches_one_call_and_stays_in_range():
  images = _images(batch=11)
  config = augment.AugmentConfig(max_rotation_degrees=15, noise_stddev=0.2)
  key = jax.random.key(3)
  whole = np.asarray(augment.augment(key, images, config))
  for chunk_size in (4, 64):
    chunked = augment.augment_in_chunks(key, np.asarray(images), config,
                                        chunk_size=chunk_size)
    assert isinstance(chunked, np.ndarray)
    np.testing.assert_allclose(chunked, whole, atol=1e-6)
  assert whole.min() >= 0 and whole.max() <= 1


@pytest.mark.parametrize('config', [
    augment.AugmentConfig(),
    augment.AugmentConfig(max_rotation_degrees=20, max_scale_change=0.2),
    augment.AugmentConfig(0, 0, 1.0, 0.0),
    augment.AugmentConfig(0, 0, 0, 0.1),
])
def test_deterministic_per_key(config):
  images = _images()
  first = augment.augment(jax.random.key(7), images, config)
  again = augment.augment(jax.random.key(7), images, config)
  other = augment.augment(jax.random.key(8), images, config)
  np.testing.assert_array_equal(first, again)
  assert not np.allclose(first, other)
  # Each image draws its own transformation: not one for the whole batch.
  params = augment.random_params(jax.random.key(7), 5, config)
  if config.max_rotation_degrees:
    assert len(np.unique(np.asarray(params.angle))) == 5
    assert np.all(np.abs(params.angle) <= np.deg2rad(
        config.max_rotation_degrees))


@pytest.mark.parametrize('config', [ZERO, augment.NO_AUGMENTATION])
def test_zero_strength_is_identity(config):
  images = _images()
  np.testing.assert_array_equal(
      augment.augment(jax.random.key(0), images, config), images)
  np.testing.assert_array_equal(
      augment.augment_in_chunks(jax.random.key(0), np.asarray(images), config,
                                chunk_size=2), images)


def test_zero_parameters_of_each_transformation_are_identity():
  images = _images()
  key = jax.random.key(0)
  np.testing.assert_array_equal(augment.rotate_and_scale(images, 0.0, 1.0),
                                images)
  np.testing.assert_array_equal(augment.gaussian_blur(images, 0.0), images)
  np.testing.assert_array_equal(
      augment.add_gaussian_noise(key, images, 0.0), images)
  # Per-image parameters: only the images with nonzero strength change.
  blurred = augment.gaussian_blur(images, jnp.array([0.0, 1.0, 0.0, 2.0, 0.0]))
  np.testing.assert_array_equal(blurred[::2], images[::2])
  assert not np.allclose(blurred[1::2], images[1::2])


@pytest.mark.parametrize('degrees', [-10.0, -3.0, 5.0, 10.0])
@pytest.mark.parametrize('offset', [(0.0, 0.0), (2.5, -1.5)])
def test_small_rotation_preserves_mass(degrees, offset):
  image = _blob(offset=offset)[None].astype(np.float32)
  rotated = np.asarray(augment.rotate_and_scale(image, np.deg2rad(degrees)))
  np.testing.assert_allclose(rotated.sum(), image.sum(), rtol=0.01)
  assert not np.allclose(rotated, image, atol=1e-3) or offset == (0.0, 0.0)


@pytest.mark.parametrize('size', [(8, 8), (9, 9), (6, 10)])
def test_quarter_turn_is_rot90_counterclockwise(size):
  image = np.random.default_rng(1).uniform(size=size).astype(np.float32)
  if size[0] != size[1]:
    # A quarter turn of a non-square image leaves part of it outside: embed
    # it in a square one.
    square = np.zeros((10, 10), np.float32)
    square[2:8, :] = image
    image = square
  rotated = augment.rotate_and_scale(image[None], np.pi / 2)[0]
  np.testing.assert_allclose(rotated, np.rot90(image), atol=1e-5)


@pytest.mark.parametrize('scale', [0.9, 1.1, 1.2])
def test_scaling_multiplies_mass_by_scale_squared(scale):
  # Wide enough that bilinear interpolation errors stay well below 1%.
  image = _blob(size=32, sigma=4.0)[None].astype(np.float32)
  scaled = np.asarray(augment.rotate_and_scale(image, 0.0, scale))
  np.testing.assert_allclose(scaled.sum(), scale**2 * image.sum(), rtol=0.01)
  # The blob gets wider: its second moment grows with scale^2.
  rows = np.arange(image.shape[1]) - (image.shape[1] - 1) / 2
  spread = lambda im: (im[0].sum(axis=1) * rows**2).sum() / im.sum()
  np.testing.assert_allclose(spread(scaled), scale**2 * spread(image),
                             rtol=0.02)


@pytest.mark.parametrize('sigma', [0.5, 1.0, 3.0, [0.3, 0.0, 5.0, 1.0, 2.0]])
def test_blur_preserves_mean_even_at_the_borders(sigma):
  images = _images()
  blurred = augment.gaussian_blur(images, jnp.asarray(sigma, jnp.float32))
  np.testing.assert_allclose(blurred.mean(axis=(1, 2)),
                             images.mean(axis=(1, 2)), rtol=1e-5)
  # Smoothing lowers the spread of the pixel values.
  assert np.all(blurred.std(axis=(1, 2)) <= images.std(axis=(1, 2)) + 1e-6)


@pytest.mark.parametrize('sigma', [0.5, 1.0, 2.0])
def test_blur_matches_scipy_away_from_the_borders(sigma):
  image = (_blob(size=32, sigma=2.0) + _blob(size=32, sigma=1.0,
                                             offset=(3.0, -2.0)))
  expected = scipy.ndimage.gaussian_filter(image, sigma, mode='constant',
                                           truncate=8.0)
  blurred = augment.gaussian_blur(image[None].astype(np.float32), sigma)[0]
  np.testing.assert_allclose(blurred, expected, atol=1e-5)


def test_noise_statistics():
  images = jnp.full((2, 64, 64), 0.5, jnp.float32)
  noisy = augment.add_gaussian_noise(jax.random.key(0), images,
                                     jnp.array([0.1, 0.3]))
  residual = np.asarray(noisy - images)
  np.testing.assert_allclose(residual.std(axis=(1, 2)), [0.1, 0.3], rtol=0.05)
  np.testing.assert_allclose(residual.mean(axis=(1, 2)), 0, atol=0.02)


def test_augment_is_jittable_and_vmappable():
  images = _images()
  config = augment.AugmentConfig(max_rotation_degrees=5)
  jitted = jax.jit(lambda key, x: augment.augment(key, x, config))
  np.testing.assert_allclose(jitted(jax.random.key(2), images),
                             augment.augment(jax.random.key(2), images, config),
                             atol=1e-6)
  stacked = jax.vmap(augment.gaussian_blur, in_axes=(0, None))(
      jnp.stack([images, images]), 1.0)
  chex.assert_shape(stacked, (2,) + images.shape)


@pytest.mark.parametrize('kwargs,match', [
    (dict(max_rotation_degrees=90), 'at most 45'),
    (dict(max_rotation_degrees=-1), 'max_rotation_degrees'),
    (dict(max_scale_change=1.0), 'max_scale_change'),
    (dict(max_blur_sigma=-0.5), 'max_blur_sigma'),
    (dict(noise_stddev=-0.1), 'noise_stddev'),
    (dict(value_range=(1.0, 0.0)), 'value_range'),
])
def test_config_validation(kwargs, match):
  with pytest.raises(ValueError, match=match):
    augment.augment(jax.random.key(0), _images(), augment.AugmentConfig(
        **kwargs))


@pytest.mark.parametrize('fn', [
    lambda x: augment.rotate_and_scale(x, 0.1),
    lambda x: augment.gaussian_blur(x, 1.0),
    lambda x: augment.augment(jax.random.key(0), x),
])
def test_rejects_images_without_batch_axis(fn):
  with pytest.raises(ValueError, match='batch, height, width'):
    fn(jnp.ones((8, 8)))
