"""Tests for l0enc.synthetic: the generator and the standard problem."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l0enc import synthetic


def test_make_synthetic_shapes_norms_and_sparsity():
  result = synthetic.make_synthetic(jax.random.key(0), 2000, signal_dim=16,
                                    code_dim=32, nonzero_prob=0.125)
  chex.assert_shape([result.signals, result.codes, result.dictionary],
                    [(2000, 16), (2000, 32), (16, 32)])
  chex.assert_type([result.signals, result.codes, result.dictionary],
                   jnp.float32)
  np.testing.assert_allclose(
      jnp.linalg.norm(result.dictionary, axis=0), 1, rtol=1e-5)
  # 64000 Bernoulli(0.125) draws: the standard error is about 0.0013.
  np.testing.assert_allclose(jnp.mean(result.codes != 0), 0.125, atol=0.005)
  chex.assert_trees_all_close(result.signals,
                              result.codes @ result.dictionary.T, atol=1e-5)
  nonzero_amplitudes = result.codes[result.codes != 0]
  np.testing.assert_allclose(jnp.std(nonzero_amplitudes), 1, atol=0.02)


@pytest.mark.parametrize('snr_db', [0.0, 10.0, 30.0])
def test_make_synthetic_noise_has_requested_snr(snr_db):
  result = synthetic.make_synthetic(jax.random.key(1), 2000, signal_dim=16,
                                    code_dim=32, nonzero_prob=0.1,
                                    snr_db=snr_db)
  clean = result.codes @ result.dictionary.T
  noise = result.signals - clean
  measured = 10 * np.log10(np.mean(clean**2) / np.mean(noise**2))
  np.testing.assert_allclose(measured, snr_db, atol=0.1)


def test_make_synthetic_uses_given_dictionary_and_key():
  dictionary = jnp.asarray(np.random.default_rng(0).normal(size=(16, 32)))
  first = synthetic.make_synthetic(jax.random.key(2), 2000, dictionary,
                                   nonzero_prob=1.0, code_dim=32)
  again = synthetic.make_synthetic(jax.random.key(2), 2000, dictionary,
                                   nonzero_prob=1.0)
  other = synthetic.make_synthetic(jax.random.key(3), 2000, dictionary,
                                   nonzero_prob=1.0)
  chex.assert_trees_all_close(first.dictionary, dictionary)
  assert jnp.all(first.codes != 0)
  chex.assert_trees_all_equal(first, again)
  assert not np.array_equal(first.codes, other.codes)


@pytest.mark.parametrize('kwargs,message', [
    (dict(num_samples=0), 'num_samples'),
    (dict(nonzero_prob=0.0), 'nonzero_prob'),
    (dict(nonzero_prob=1.5), 'nonzero_prob'),
    (dict(nonzero_prob=float('nan')), 'nonzero_prob'),
    (dict(snr_db=float('inf')), 'snr_db'),
    (dict(signal_dim=None), 'signal_dim and code_dim are required'),
    (dict(code_dim=0), 'code_dim'),
    (dict(dictionary=jnp.ones(4)), 'dictionary must have shape'),
    (dict(dictionary=jnp.ones((4, 6)), code_dim=5), r'code_dim=5 does not'),
    (dict(dictionary=jnp.full((4, 6), jnp.nan), signal_dim=None), 'dictionary'),
])
def test_make_synthetic_rejects_bad_arguments(kwargs, message):
  arguments = dict(num_samples=10, signal_dim=4, code_dim=6, nonzero_prob=0.5)
  arguments.update(kwargs)
  with pytest.raises(ValueError, match=message):
    synthetic.make_synthetic(jax.random.key(0), **arguments)


# ---------------------------------------------------------------------------
# The fresh-sample stream of the standard problem


def _small_problem(**kwargs):
  arguments = dict(signal_dim=16, code_dim=32, batch_size=8,
                   num_validation=50, num_test=60)
  arguments.update(kwargs)
  return synthetic.make_synthetic_problem(jax.random.key(0), **arguments)


def test_standard_problem_shapes_and_statistics():
  problem = synthetic.make_synthetic_problem(jax.random.key(0),
                                             num_validation=20, num_test=1000)
  chex.assert_shape(problem.dictionary, (250, 500))
  np.testing.assert_allclose(np.linalg.norm(problem.dictionary, axis=0), 1,
                             rtol=1e-5)
  chex.assert_shape([problem.validation.signals, problem.test.codes],
                    [(20, 250), (1000, 500)])
  # 500,000 Bernoulli(0.1) draws: standard error 0.0004.
  np.testing.assert_allclose(np.mean(problem.test.codes != 0), 0.1,
                             atol=0.002)
  chex.assert_trees_all_close(problem.test.signals,
                              problem.test.codes @ problem.dictionary.T,
                              atol=1e-5)
  for dataset in (problem.validation, problem.test):
    chex.assert_trees_all_equal(dataset.dictionary, problem.dictionary)


def test_stream_is_a_pure_function_of_the_step_and_never_repeats():
  problem = _small_problem()
  first, again = (synthetic.synthetic_batch(problem, 3),
                  synthetic.synthetic_batch(problem, 3))
  chex.assert_trees_all_equal(first, again)
  chex.assert_shape([first.signals, first.codes], [(8, 16), (8, 32)])
  chex.assert_trees_all_equal(first.dictionary, problem.dictionary)
  codes = np.stack([np.asarray(synthetic.synthetic_batch(problem, step).codes)
                    for step in range(20)]).reshape(-1, 32)
  held_out = np.concatenate([problem.validation.codes, problem.test.codes])
  all_codes = np.concatenate([codes, held_out])
  all_codes = all_codes[np.any(all_codes != 0, axis=1)]  # 0.9^32: 3 % empty.
  # No two nonzero codes are the same (continuous amplitudes): no repeats.
  assert len(np.unique(all_codes, axis=0)) == len(all_codes) > 200
  # A traced step (vmap under jit) gives the same batches.
  batches = jax.jit(jax.vmap(
      lambda step: synthetic.synthetic_batch(problem, step)))(jnp.arange(20))
  chex.assert_trees_all_close(batches.codes.reshape(-1, 32), codes)


def test_held_out_sets_are_fixed_by_the_key():
  problem, again = _small_problem(), _small_problem()
  other = synthetic.make_synthetic_problem(jax.random.key(1), signal_dim=16,
                                           code_dim=32, num_validation=50,
                                           num_test=60)
  chex.assert_trees_all_equal(problem.validation, again.validation)
  chex.assert_trees_all_equal(problem.test, again.test)
  assert not np.array_equal(problem.test.codes, other.test.codes)
  assert not np.array_equal(problem.validation.codes[:50],
                            problem.test.codes[:50])


@pytest.mark.parametrize('snr_db', [20.0, 40.0])
def test_stream_and_held_out_sets_have_the_requested_snr(snr_db):
  problem = _small_problem(snr_db=snr_db, batch_size=2000, num_test=2000)
  for dataset in (synthetic.synthetic_batch(problem, 0), problem.test):
    clean = dataset.codes @ dataset.dictionary.T
    noise = dataset.signals - clean
    measured = 10 * np.log10(np.mean(clean**2) / np.mean(noise**2))
    np.testing.assert_allclose(measured, snr_db, atol=0.1)


@pytest.mark.parametrize('kwargs,message', [
    (dict(batch_size=0), 'batch_size'),
    (dict(num_test=0), 'num_samples'),
    (dict(nonzero_prob=0.0), 'nonzero_prob'),
])
def test_make_synthetic_problem_rejects_bad_arguments(kwargs, message):
  with pytest.raises(ValueError, match=message):
    _small_problem(**kwargs)


def test_synthetic_batch_rejects_a_negative_step():
  with pytest.raises(ValueError, match='step'):
    synthetic.synthetic_batch(_small_problem(), -1)
