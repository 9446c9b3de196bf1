"""Data augmentation of grey-scale images: small rotations and scalings, blur, noise.

The DDSE paper trains on MNIST with "common data augmentations (noise, blur,
flipping, rotation, and scaling)" (Sec. 4.2). This module implements all of
them except flipping, as pure, batched, jit-compiled functions with explicit
PRNG keys:

  * `rotate_and_scale`: an affine resampling about the image centre
    (bilinear, `jax.scipy.ndimage.map_coordinates`, vmapped over the batch),
  * `gaussian_blur`: a separable Gaussian blur that preserves the image mass,
  * `add_gaussian_noise`: additive white Gaussian noise,
  * `augment`: all three with random per-image strengths, then clipping to
    the valid pixel range.

No flips, on purpose: a mirrored 2, 3, 4, 5, 7 or 9 is not a digit of its
class, and flipping turns some digits into others (a vertically flipped 6
looks like a 9 rotated by 180 degrees). For the same reason rotations stay
small (10 degrees by default): a 6 and a 9 are one 180-degree rotation apart,
and large rotations blur the line between 1 and 7 or 2 and 5. The paper's
"flipping" is therefore left out for digits; use `augment` for other image
data only if its classes are invariant to the transformations it applies.

Randomness is per image: `augment(key, images)` splits `key` into one key per
image, so an image's augmentation depends on the key and its position only,
not on the batch it is processed in (`augment_in_chunks` gives the same
result as one `augment` call, up to floating-point rounding).

Images are float arrays of shape `(batch, height, width)`; the row index
grows downwards, as when displayed. Angles are in radians (degrees in
`AugmentConfig`), positive counter-clockwise as displayed.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from l0enc import validation


class AugmentConfig(NamedTuple):
  """Strengths of the random augmentations (all 0: the identity).

  Each image gets its own random draw: a rotation angle uniform in
  `[-max_rotation_degrees, max_rotation_degrees]`, a scale factor uniform in
  `[1 - max_scale_change, 1 + max_scale_change]`, a blur width uniform in
  `[0, max_blur_sigma]` pixels and additive noise of standard deviation
  `noise_stddev`. The defaults are mild, for 28 x 28 digits in [0, 1].
  Clipping to `value_range` makes the noise on a black background
  one-sided: it raises the mean pixel by about `0.4 * noise_stddev`, which
  is one reason to keep the noise weak.

  Attributes:
    max_rotation_degrees: largest rotation, in degrees, in [0, 45]: digits
      change class under large rotations (6 and 9), so keep it small.
    max_scale_change: largest relative change of size, in [0, 1).
    max_blur_sigma: largest Gaussian blur standard deviation, in pixels.
    noise_stddev: standard deviation of the additive Gaussian noise.
    value_range: `(low, high)` the result is clipped to (pixel values of
      MNIST from `l0enc.data.load_mnist` lie in [0, 1]), or None for no
      clipping.
  """
  max_rotation_degrees: float = 10.0
  max_scale_change: float = 0.1
  max_blur_sigma: float = 0.5
  noise_stddev: float = 0.03
  value_range: tuple[float, float] | None = (0.0, 1.0)

  def check(self) -> 'AugmentConfig':
    """Returns the config after checking its ranges (raises ValueError)."""
    validation.check_nonnegative('max_rotation_degrees',
                                 self.max_rotation_degrees)
    if self.max_rotation_degrees > 45:
      raise ValueError('max_rotation_degrees must be at most 45 (digits change '
                       f'class under large rotations), got '
                       f'{self.max_rotation_degrees}.')
    validation.check_nonnegative('max_scale_change', self.max_scale_change)
    if self.max_scale_change >= 1:
      raise ValueError('max_scale_change must be in [0, 1), got '
                       f'{self.max_scale_change}.')
    validation.check_nonnegative('max_blur_sigma', self.max_blur_sigma)
    validation.check_nonnegative('noise_stddev', self.noise_stddev)
    if self.value_range is not None:
      low, high = self.value_range
      if not low < high:
        raise ValueError(f'value_range must be (low, high) with low < high, '
                         f'got {self.value_range}.')
      # A hashable tuple of floats: the config is a static jit argument.
      return self._replace(value_range=(float(low), float(high)))
    return self

  @property
  def is_identity(self) -> bool:
    """True if no transformation is applied (clipping aside)."""
    return (self.max_rotation_degrees == 0 and self.max_scale_change == 0 and
            self.max_blur_sigma == 0 and self.noise_stddev == 0)


NO_AUGMENTATION = AugmentConfig(0.0, 0.0, 0.0, 0.0, None)


class AugmentParams(NamedTuple):
  """The random draws of `augment` for a batch of images, each `(batch,)`.

  Attributes:
    angle: rotation angles in radians.
    scale: scale factors (> 1 enlarges the content).
    blur_sigma: Gaussian blur standard deviations in pixels.
  """
  angle: jax.Array
  scale: jax.Array
  blur_sigma: jax.Array


def _check_images(images: jax.Array) -> jax.Array:
  images = jnp.asarray(images)
  if images.ndim != 3:
    raise ValueError('images must have shape (batch, height, width), got '
                     f'{images.shape}.')
  if not jnp.issubdtype(images.dtype, jnp.floating):
    raise ValueError(f'images must be floating point, got {images.dtype}.')
  return images


def _per_image(name: str, value: jax.Array, batch: int,
               dtype: jnp.dtype) -> jax.Array:
  value = jnp.asarray(value, dtype)
  if value.ndim == 0:
    return jnp.broadcast_to(value, (batch,))
  if value.shape != (batch,):
    raise ValueError(f'{name} must be a scalar or have shape ({batch},), got '
                     f'{value.shape}.')
  return value


def _rotate_and_scale_one(image: jax.Array, angle: jax.Array,
                          scale: jax.Array) -> jax.Array:
  height, width = image.shape
  row_center, col_center = (height - 1) / 2, (width - 1) / 2
  rows, cols = jnp.meshgrid(jnp.arange(height, dtype=image.dtype),
                            jnp.arange(width, dtype=image.dtype),
                            indexing='ij')
  # Output pixel q takes the input at A^{-1} q with A = scale * R(angle), in
  # x-right / y-up coordinates about the centre (the row axis points down).
  x, y = cols - col_center, row_center - rows
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  x_in = (cos * x + sin * y) / scale
  y_in = (cos * y - sin * x) / scale
  return jax.scipy.ndimage.map_coordinates(
      image, [row_center - y_in, col_center + x_in], order=1, mode='constant',
      cval=0.0)


@jax.jit
def rotate_and_scale(images: jax.Array, angle: jax.Array,
                     scale: jax.Array = 1.0) -> jax.Array:
  """Rotates and scales each image about its centre (bilinear resampling).

  The output pixel at `q` (relative to the centre `((h-1)/2, (w-1)/2)`)
  takes the input at `A^{-1} q`, `A = scale * R(angle)`, interpolated
  bilinearly; points that fall outside the image read 0 (the background of
  digits). With angle 0 and scale 1 the images come back unchanged. Small
  rotations keep the image mass up to interpolation error; scaling by `c`
  multiplies it by about `c^2`.

  Args:
    images: shape `(batch, height, width)`, floating point.
    angle: rotation in radians, counter-clockwise as displayed (row index
      growing downwards; `angle = pi/2` is `np.rot90`); a scalar or one per
      image, shape `(batch,)`.
    scale: scale factor(s) > 0 (> 1 enlarges the content); a scalar or
      `(batch,)`.

  Returns:
    The resampled images, same shape and dtype.
  """
  images = _check_images(images)
  batch = images.shape[0]
  angle = _per_image('angle', angle, batch, images.dtype)
  scale = _per_image('scale', scale, batch, images.dtype)
  return jax.vmap(_rotate_and_scale_one)(images, angle, scale)


def _blur_matrices(sigma: jax.Array, size: int, dtype: jnp.dtype) -> jax.Array:
  """`(batch, size, size)` mass-preserving 1-D Gaussian blur matrices.

  Column j holds the Gaussian centred on pixel j, restricted to the image
  and normalized to sum 1: each input pixel spreads all of its mass over
  the output, none is lost at the borders. sigma = 0 gives the identity.
  """
  positions = jnp.arange(size, dtype=dtype)
  distance = positions[:, None] - positions[None, :]
  safe_sigma = jnp.maximum(sigma, jnp.finfo(dtype).tiny)[:, None, None]
  weights = jnp.where(distance == 0, 1.0,
                      jnp.exp(-0.5 * jnp.square(distance / safe_sigma)))
  weights = jnp.where(sigma[:, None, None] > 0, weights,
                      (distance == 0).astype(dtype))
  return weights / jnp.sum(weights, axis=1, keepdims=True)


@jax.jit
def gaussian_blur(images: jax.Array, sigma: jax.Array) -> jax.Array:
  """Blurs each image with a separable Gaussian of standard deviation sigma.

  `out = B_rows @ image @ B_cols^T` with 1-D blur matrices whose columns
  are Gaussians normalized over the image, so the total mass (and the mean)
  of every image is preserved exactly, borders included: the part of a
  pixel's kernel that would fall outside the image is given to the pixels
  inside. sigma = 0 is the identity.

  Args:
    images: shape `(batch, height, width)`, floating point.
    sigma: standard deviation(s) in pixels, >= 0: a scalar or `(batch,)`.

  Returns:
    The blurred images, same shape and dtype.
  """
  images = _check_images(images)
  batch, height, width = images.shape
  sigma = _per_image('sigma', sigma, batch, images.dtype)
  rows = _blur_matrices(sigma, height, images.dtype)
  cols = _blur_matrices(sigma, width, images.dtype)
  # Full precision: TF32 on GPUs would perturb the identity of sigma = 0.
  return jnp.einsum('bij,bjk,blk->bil', rows, images, cols,
                    precision=jax.lax.Precision.HIGHEST)


@jax.jit
def add_gaussian_noise(key: jax.Array, images: jax.Array,
                       stddev: jax.Array) -> jax.Array:
  """`images + stddev * N(0, 1)`, independent noise per pixel.

  Args:
    key: PRNG key of the noise.
    images: shape `(batch, height, width)`, floating point.
    stddev: noise standard deviation(s), >= 0: a scalar or `(batch,)`.

  Returns:
    The noisy images, same shape and dtype (not clipped).
  """
  images = _check_images(images)
  stddev = _per_image('stddev', stddev, images.shape[0], images.dtype)
  noise = jax.random.normal(key, images.shape, images.dtype)
  return images + stddev[:, None, None] * noise


def _draw(key: jax.Array, config: AugmentConfig,
          dtype: jnp.dtype) -> tuple[AugmentParams, jax.Array]:
  """One image's random parameters and noise key."""
  angle_key, scale_key, blur_key, noise_key = jax.random.split(key, 4)
  max_angle = np.deg2rad(config.max_rotation_degrees)
  angle = jax.random.uniform(angle_key, (), dtype, -max_angle, max_angle)
  scale = jax.random.uniform(scale_key, (), dtype, 1 - config.max_scale_change,
                             1 + config.max_scale_change)
  blur_sigma = jax.random.uniform(blur_key, (), dtype, 0.0,
                                  config.max_blur_sigma)
  return AugmentParams(angle, scale, blur_sigma), noise_key


def random_params(key: jax.Array, num_images: int,
                  config: AugmentConfig = AugmentConfig(),
                  dtype: jnp.dtype = jnp.float32) -> AugmentParams:
  """The per-image random draws that `augment(key, ...)` uses.

  Args:
    key: the key given to `augment`.
    num_images: the batch size.
    config: the strengths.
    dtype: dtype of the draws.

  Returns:
    `AugmentParams`, each of shape `(num_images,)`.
  """
  config.check()
  return jax.vmap(lambda k: _draw(k, config, dtype)[0])(
      jax.random.split(key, num_images))


@functools.partial(jax.jit, static_argnames=('config',))
def _augment_with_keys(keys: jax.Array, images: jax.Array,
                       config: AugmentConfig) -> jax.Array:
  """`augment` with one given key per image (the batch-independent core)."""
  params, noise_keys = jax.vmap(lambda k: _draw(k, config, images.dtype))(keys)
  # A strength that is 0 skips its transformation entirely (a static
  # decision): the identity costs nothing and is exact.
  if config.max_rotation_degrees > 0 or config.max_scale_change > 0:
    images = rotate_and_scale(images, params.angle, params.scale)
  if config.max_blur_sigma > 0:
    images = gaussian_blur(images, params.blur_sigma)
  if config.noise_stddev > 0:
    noise = jax.vmap(lambda k: jax.random.normal(k, images.shape[1:],
                                                 images.dtype))(noise_keys)
    images = images + config.noise_stddev * noise
  if config.value_range is not None:
    images = jnp.clip(images, *config.value_range)
  return images


def augment(key: jax.Array, images: jax.Array,
            config: AugmentConfig = AugmentConfig()) -> jax.Array:
  """Random rotation and scaling, then blur, then noise, then clipping.

  Every image draws its own angle, scale, blur width and noise from its own
  key (`jax.random.split(key, batch)[i]`): the same key gives the same
  result, and an image's augmentation does not depend on the other images
  of the batch. No flips (see the module docstring). Jit-compiled once per
  (config, shape).

  Args:
    key: PRNG key.
    images: shape `(batch, height, width)`, floating point.
    config: the strengths; `AugmentConfig(0, 0, 0, 0, None)` is the identity.

  Returns:
    The augmented images, same shape and dtype.
  """
  images = _check_images(images)
  config = AugmentConfig(*config).check()
  return _augment_with_keys(jax.random.split(key, images.shape[0]), images,
                            config)


def augment_in_chunks(key: jax.Array, images: np.ndarray,
                      config: AugmentConfig = AugmentConfig(), *,
                      chunk_size: int = 8192) -> np.ndarray:
  """`augment` over a large host array, a chunk at a time (bounded memory).

  Each image gets the key `augment(key, images)` would give it, so the
  result equals one big `augment` call up to rounding, whatever the chunk
  size. The last chunk is padded to the full chunk size, so everything
  compiles once.

  Args:
    key: PRNG key.
    images: shape `(num_images, height, width)`, floating point (NumPy or
      JAX).
    config: the strengths.
    chunk_size: images per jitted call.

  Returns:
    A NumPy array like `images`.
  """
  images = np.asarray(images)
  if images.ndim != 3 or not np.issubdtype(images.dtype, np.floating):
    raise ValueError('images must be floating point of shape (num_images, '
                     f'height, width), got {images.dtype}{list(images.shape)}.')
  config = AugmentConfig(*config).check()
  chunk_size = validation.check_int_in_range('chunk_size', chunk_size, 1,
                                             2**31 - 1)
  num_images = len(images)
  if num_images == 0:
    return images.copy()
  if config.is_identity and config.value_range is None:
    return images.copy()
  keys = jax.random.split(key, num_images)
  chunk_size = min(chunk_size, num_images)
  outputs = []
  for start in range(0, num_images, chunk_size):
    chunk = images[start:start + chunk_size]
    chunk_keys = keys[start:start + chunk_size]
    padding = chunk_size - len(chunk)
    if padding:
      chunk = np.concatenate([chunk, np.zeros((padding,) + chunk.shape[1:],
                                              chunk.dtype)])
      chunk_keys = jnp.concatenate([chunk_keys,
                                    jnp.broadcast_to(chunk_keys[-1:],
                                                     (padding,)
                                                     + chunk_keys.shape[1:])])
    augmented = _augment_with_keys(chunk_keys, jnp.asarray(chunk), config)
    outputs.append(np.asarray(augmented)[:chunk_size - padding])
  return np.concatenate(outputs)
