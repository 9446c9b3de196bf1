"""Synthetic sparse coding problems: signals from known sparse codes.

`make_synthetic` draws signals `x = D a (+ noise)` from Bernoulli-Gaussian
codes `a`, for a given or a random unit-norm dictionary D. The standard
compressed-sensing problem of deep unfolding (`make_synthetic_problem`: a
250 x 500 Gaussian D, Bernoulli(0.1) codes) comes with fixed validation and
test sets and a training stream of fresh batches (`synthetic_batch`), a pure
function of the step, so that `train.fit` can train on it and resume.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from l0enc import validation


class SyntheticData(NamedTuple):
  """Signals from known sparse codes: `signals ≈ codes @ dictionary.T`.

  Attributes:
    signals: shape (num_samples, signal_dim), with noise if requested.
    codes: Bernoulli–Gaussian codes, shape (num_samples, code_dim).
    dictionary: shape (signal_dim, code_dim).
  """
  signals: jax.Array
  codes: jax.Array
  dictionary: jax.Array


def make_synthetic(key: jax.Array, num_samples: int,
                   dictionary: jax.Array | None = None, *,
                   signal_dim: int | None = None,
                   code_dim: int | None = None, nonzero_prob: float = 0.1,
                   snr_db: float | None = None,
                   dtype: Any = jnp.float32) -> SyntheticData:
  """Generates signals `x = D a (+ noise)` from Bernoulli–Gaussian codes `a`.

  Each code entry is nonzero with probability `nonzero_prob`, with a standard
  Gaussian amplitude. Without a `dictionary`, D is Gaussian with columns
  scaled to unit norm. With `snr_db`, white Gaussian noise is added with
  variance `mean(clean²) / 10^(snr_db / 10)`, the clean power measured over
  the whole generated set, so the realized SNR is close to `snr_db`.

  Args:
    key: a `jax.random` key.
    num_samples: number of signals N.
    dictionary: optional (signal_dim, code_dim) dictionary, used as given.
    signal_dim: n; required without `dictionary`, else must match it.
    code_dim: p; required without `dictionary`, else must match it.
    nonzero_prob: probability in (0, 1] that a code entry is nonzero.
    snr_db: optional signal-to-noise ratio in dB; None for clean signals.
    dtype: floating dtype of the outputs.

  Returns:
    `SyntheticData(signals (N, n), codes (N, p), dictionary (n, p))`.
  """
  num_samples = validation.check_int_in_range(
      'num_samples', num_samples, 1, 2**31 - 1)
  if not 0 < nonzero_prob <= 1:
    raise ValueError(f'nonzero_prob must be in (0, 1], got {nonzero_prob!r}.')
  validation.check_finite('snr_db', snr_db)
  if dictionary is None:
    if signal_dim is None or code_dim is None:
      raise ValueError('signal_dim and code_dim are required without a '
                       f'dictionary, got {signal_dim!r} and {code_dim!r}.')
    signal_dim = validation.check_int_in_range(
        'signal_dim', signal_dim, 1, 2**31 - 1)
    code_dim = validation.check_int_in_range(
        'code_dim', code_dim, 1, 2**31 - 1)
  else:
    if np.ndim(dictionary) != 2:
      raise ValueError('dictionary must have shape (signal_dim, code_dim), '
                       f'got {np.shape(dictionary)}.')
    for name, given, actual in zip(('signal_dim', 'code_dim'),
                                   (signal_dim, code_dim),
                                   np.shape(dictionary)):
      if given is not None and given != actual:
        raise ValueError(f'{name}={given} does not match the dictionary shape '
                         f'{np.shape(dictionary)}.')
    validation.check_finite('dictionary', dictionary)

  dictionary_key, support_key, amplitude_key, noise_key = jax.random.split(
      key, 4)
  if dictionary is None:
    dictionary = jax.random.normal(dictionary_key, (signal_dim, code_dim),
                                   dtype)
    dictionary /= jnp.linalg.norm(dictionary, axis=0, keepdims=True)
  dictionary = jnp.asarray(dictionary, dtype)
  shape = (num_samples, dictionary.shape[1])
  support = jax.random.bernoulli(support_key, nonzero_prob, shape)
  codes = jnp.where(support, jax.random.normal(amplitude_key, shape, dtype), 0)
  signals = codes @ dictionary.T
  if snr_db is not None:
    noise_std = jnp.sqrt(jnp.mean(signals**2) / 10**(snr_db / 10))
    signals += noise_std * jax.random.normal(noise_key, signals.shape, dtype)
  return SyntheticData(signals=signals, codes=codes, dictionary=dictionary)


# The standard compressed-sensing problem of deep unfolding (Chen et al.
# 2018, LISTA-CPSS; Liu et al. 2019, ALISTA): a 250 x 500 Gaussian matrix with
# unit-norm columns and Bernoulli(0.1)-Gaussian codes.
STANDARD_SIGNAL_DIM = 250
STANDARD_CODE_DIM = 500
STANDARD_NONZERO_PROB = 0.1


class SyntheticProblem(NamedTuple):
  """A sparse coding problem with a fresh-sample training stream.

  Training batches come from `synthetic_batch(problem, step)`: a pure
  function of the step, so a resumed run sees the same batches and no batch
  repeats. The validation and test sets are fixed and drawn from keys that
  the training stream never uses.

  Attributes:
    dictionary: D, shape (signal_dim, code_dim).
    train_key: the key of the training stream.
    validation: the fixed validation set.
    test: the fixed test set.
    batch_size: signals per training batch.
    nonzero_prob: probability that a code entry is nonzero.
    snr_db: the signal-to-noise ratio in dB, or None for noiseless signals.
  """
  dictionary: jax.Array
  train_key: jax.Array
  validation: SyntheticData
  test: SyntheticData
  batch_size: int
  nonzero_prob: float
  snr_db: float | None


def make_synthetic_problem(
    key: jax.Array, *, signal_dim: int = STANDARD_SIGNAL_DIM,
    code_dim: int = STANDARD_CODE_DIM,
    nonzero_prob: float = STANDARD_NONZERO_PROB,
    snr_db: float | None = None, batch_size: int = 64,
    num_validation: int = 1000, num_test: int = 1000,
    dictionary: jax.Array | None = None,
    dtype: Any = jnp.float32) -> SyntheticProblem:
  """The standard compressed-sensing problem (by default) from one key.

  The key is split four ways: the dictionary (unless one is given), the
  training stream, the validation set and the test set. With the defaults:
  D is 250 x 500 Gaussian with unit-norm columns, codes are Bernoulli(0.1)
  supports with N(0, 1) values, `x = D a` (plus white noise at `snr_db`).

  Args:
    key: a `jax.random` key.
    signal_dim: n (ignored with a `dictionary`).
    code_dim: p (ignored with a `dictionary`).
    nonzero_prob: probability in (0, 1] that a code entry is nonzero.
    snr_db: signal-to-noise ratio in dB, or None for noiseless signals.
    batch_size: signals per training batch.
    num_validation: size of the fixed validation set.
    num_test: size of the fixed test set.
    dictionary: optional D, used as given.
    dtype: floating dtype.

  Returns:
    A `SyntheticProblem`.
  """
  batch_size = validation.check_int_in_range('batch_size', batch_size, 1,
                                             2**31 - 1)
  dictionary_key, train_key, validation_key, test_key = jax.random.split(
      key, 4)
  if dictionary is None:
    dictionary = make_synthetic(dictionary_key, 1, signal_dim=signal_dim,
                                code_dim=code_dim, dtype=dtype).dictionary
  held_out = {
      name: make_synthetic(set_key, size, dictionary,
                           nonzero_prob=nonzero_prob, snr_db=snr_db,
                           dtype=dtype)
      for name, set_key, size in (('validation', validation_key,
                                   num_validation),
                                  ('test', test_key, num_test))}
  return SyntheticProblem(
      dictionary=jnp.asarray(dictionary, dtype), train_key=train_key,
      validation=held_out['validation'], test=held_out['test'],
      batch_size=batch_size, nonzero_prob=float(nonzero_prob),
      snr_db=None if snr_db is None else float(snr_db))


def synthetic_batch(problem: SyntheticProblem,
                    step: jax.Array | int) -> SyntheticData:
  """The training batch of SGD step `step`: fresh samples, never repeated.

  A pure function of `(problem.train_key, step)` (the key folded with the
  step), traceable under `jit`/`vmap` with a traced step, so training
  resumes deterministically after a kill.

  Args:
    problem: from `make_synthetic_problem`.
    step: the step number, a nonnegative integer (may be traced).

  Returns:
    `SyntheticData` with `problem.batch_size` signals and codes.
  """
  if validation.is_concrete(step):
    validation.check_int_in_range('step', step, 0, 2**31 - 1)
  return make_synthetic(jax.random.fold_in(problem.train_key, step),
                        problem.batch_size, problem.dictionary,
                        nonzero_prob=problem.nonzero_prob,
                        snr_db=problem.snr_db,
                        dtype=problem.dictionary.dtype)
