"""Tests of dictionary learning and the PCA basis."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l0enc import dictionary as dictionary_lib


def planted_problem(num_signals=3000, n=24, p=40, nonzero_prob=0.08, seed=0):
  keys = jax.random.split(jax.random.PRNGKey(seed), 3)
  true_dictionary = jax.random.normal(keys[0], (n, p))
  true_dictionary /= jnp.linalg.norm(true_dictionary, axis=0)
  codes = jax.random.normal(keys[1], (num_signals, p)) * (
      jax.random.uniform(keys[2], (num_signals, p)) < nonzero_prob)
  return codes @ true_dictionary.T, true_dictionary


def recovered_fraction(learned, true_dictionary, cosine=0.99):
  return float(jnp.mean(jnp.max(jnp.abs(true_dictionary.T @ learned), 1) >
                        cosine))


# l1 coding biases the codes, so its atoms come out less exact than OMP's; the
# bounds hold with a margin over seeds 0-5 (a random dictionary scores ~0).
@pytest.mark.parametrize('coding,min_recovered,max_objective_ratio', [
    ({'m': 4}, 0.85, 0.5), ({'lam': 0.02}, 0.6, 0.8)])
def test_learns_unit_norm_atoms_and_recovers_a_planted_dictionary(
    coding, min_recovered, max_objective_ratio):
  signals, true_dictionary = planted_problem()
  logged = []
  result = dictionary_lib.learn_dictionary(
      jax.random.PRNGKey(1), signals, 40, num_steps=1500, batch_size=128,
      num_coding_iterations=50, log_every=300,
      callback=lambda step, objective: logged.append((step, objective)),
      **coding)
  chex.assert_shape(result.dictionary, (24, 40))
  np.testing.assert_allclose(jnp.linalg.norm(result.dictionary, axis=0), 1,
                             rtol=1e-5)
  assert [step for step, _ in logged] == [300, 600, 900, 1200, 1500]
  np.testing.assert_allclose(result.objective, [o for _, o in logged])
  assert result.objective[-1] < max_objective_ratio * result.objective[0]
  assert recovered_fraction(result.dictionary, true_dictionary,
                            cosine=0.95) >= min_recovered


def test_same_key_same_dictionary():
  signals, _ = planted_problem(num_signals=500)
  run = lambda: dictionary_lib.learn_dictionary(
      jax.random.PRNGKey(3), signals, 40, m=3, num_steps=20, log_every=10)
  np.testing.assert_array_equal(run().dictionary, run().dictionary)


def test_pca_basis_matches_numpy():
  rng = np.random.default_rng(0)
  signals = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6)) + 3.0
  basis = dictionary_lib.pca_basis(jnp.asarray(signals, jnp.float32))
  covariance = np.cov(signals, rowvar=False)
  variances, vectors = np.linalg.eigh(covariance)
  np.testing.assert_allclose(basis.variances, variances[::-1],
                             atol=1e-5 * variances.max())
  np.testing.assert_allclose(basis.mean, signals.mean(0), rtol=1e-5)
  # Same eigenvectors up to sign, and the library's sign rule holds.
  np.testing.assert_allclose(np.abs(basis.components), np.abs(vectors[:, ::-1]),
                             atol=1e-3)
  chex.assert_trees_all_close(basis.components.T @ basis.components,
                              jnp.eye(6), atol=1e-5)
  pivots = np.take_along_axis(
      np.asarray(basis.components),
      np.argmax(np.abs(np.asarray(basis.components)), 0)[None], 0)
  assert np.all(pivots > 0)
  projected = dictionary_lib.pca_project(jnp.asarray(signals, jnp.float32),
                                         basis)
  np.testing.assert_allclose(np.var(np.asarray(projected), axis=0, ddof=1),
                             variances[::-1], rtol=1e-3)


@pytest.mark.parametrize('call,match', [
    (lambda s: dictionary_lib.learn_dictionary(jax.random.PRNGKey(0), s, 10),
     'exactly one'),
    (lambda s: dictionary_lib.learn_dictionary(jax.random.PRNGKey(0), s, 10,
                                               lam=-1.0), 'lam'),
    (lambda s: dictionary_lib.learn_dictionary(jax.random.PRNGKey(0), s, 10,
                                               m=9), 'm'),
    (lambda s: dictionary_lib.learn_dictionary(jax.random.PRNGKey(0), s[0], 10,
                                               m=2), 'shape'),
    (lambda s: dictionary_lib.learn_dictionary(
        jax.random.PRNGKey(0), s.at[0, 0].set(jnp.nan), 10, m=2), 'NaN'),
    (lambda s: dictionary_lib.learn_dictionary(jax.random.PRNGKey(0), s, 10,
                                               m=2, batch_size=0), 'batch'),
    (lambda s: dictionary_lib.learn_dictionary(
        jax.random.PRNGKey(0), s, 10, m=2, init=jnp.zeros((8, 9))), 'init'),
    (lambda s: dictionary_lib.pca_basis(s[:1]), 'shape'),
    (lambda s: dictionary_lib.pca_project(
        s[:, :5], dictionary_lib.pca_basis(s)), 'dimension'),
])
def test_bad_input_raises_value_error(call, match):
  signals = jax.random.normal(jax.random.PRNGKey(0), (50, 8))
  with pytest.raises(ValueError, match=match):
    call(signals)


@pytest.mark.parametrize('seed', [0, 1])
def test_mutual_coherence_matches_numpy(seed):
  dictionary = np.random.default_rng(seed).normal(size=(6, 9)) * np.arange(
      1, 10)
  atoms = dictionary / np.linalg.norm(dictionary, axis=0)
  overlaps = np.abs(atoms.T @ atoms)[~np.eye(9, dtype=bool)]
  np.testing.assert_allclose(dictionary_lib.mutual_coherence(dictionary),
                             overlaps.max(), rtol=1e-5)


def test_mutual_coherence_of_orthonormal_atoms_is_zero():
  np.testing.assert_allclose(
      dictionary_lib.mutual_coherence(np.eye(4)), 0.0, atol=1e-7)
  with pytest.raises(ValueError, match='dictionary'):
    dictionary_lib.mutual_coherence(np.ones((4, 1)))


@pytest.mark.parametrize('shape', [(6, 12), (8, 20)])
def test_tight_frame_is_unit_norm_and_tight(shape):
  n, p = shape
  dictionary = np.random.default_rng(p).normal(size=shape) * np.linspace(
      0.5, 3.0, p)  # Uneven columns and a spread-out spectrum.
  frame = np.asarray(dictionary_lib.tight_frame(dictionary, 500))
  np.testing.assert_allclose(np.linalg.norm(frame, axis=0), 1.0, rtol=1e-5)
  # D D^T = (p/n) I: every singular value squared is p/n.
  np.testing.assert_allclose(np.linalg.svd(frame, compute_uv=False)**2,
                             p / n, rtol=2e-3)


def test_tight_frame_first_step_is_the_scaled_polar_factor():
  # One projection pair, against NumPy: sqrt(p/n) U V^T, columns unit-normed.
  dictionary = np.random.default_rng(0).normal(size=(5, 9))
  atoms = dictionary / np.linalg.norm(dictionary, axis=0)
  left, _, right = np.linalg.svd(atoms, full_matrices=False)
  polar = np.sqrt(9 / 5) * left @ right
  expected = polar / np.linalg.norm(polar, axis=0)
  chex.assert_trees_all_close(
      np.asarray(dictionary_lib.tight_frame(dictionary, 1)), expected,
      atol=1e-5)


def test_tight_frame_keeps_a_unit_norm_tight_frame():
  # Two orthonormal bases side by side: unit columns, D D^T = 2 I.
  rotation = np.linalg.qr(np.random.default_rng(1).normal(size=(4, 4)))[0]
  frame = np.concatenate([np.eye(4), rotation], axis=1)
  chex.assert_trees_all_close(
      np.asarray(dictionary_lib.tight_frame(frame, 3)), frame, atol=1e-5)


def test_tight_frame_of_a_square_dictionary_is_orthogonal():
  frame = np.asarray(dictionary_lib.tight_frame(
      np.random.default_rng(2).normal(size=(5, 5)), 2))
  np.testing.assert_allclose(frame.T @ frame, np.eye(5), atol=1e-5)


@pytest.mark.parametrize('dictionary,num_iterations,match', [
    (np.ones(4), 1, 'shape'),
    (np.full((2, 3), np.nan), 1, 'NaN'),
    (np.ones((2, 3)), 0, 'num_iterations'),
])
def test_tight_frame_bad_input(dictionary, num_iterations, match):
  with pytest.raises(ValueError, match=match):
    dictionary_lib.tight_frame(dictionary, num_iterations)
