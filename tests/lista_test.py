"""Tests of l0enc.lista: the analytic weight, the coupled stages, shapes."""

import functools

import chex
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l0enc import lista
from l0enc import models
from l0enc import ops
from l0enc import solvers
from references import np_top_m

SIGNAL_DIM, CODE_DIM, NUM_STAGES = 15, 30, 4


@pytest.fixture(autouse=True)
def _enable_x64_and_exact_matmuls():
  with jax.enable_x64(True), jax.default_matmul_precision('highest'):
    yield


def _dictionary(shape=(SIGNAL_DIM, CODE_DIM), seed=0):
  atoms = np.random.default_rng(seed).normal(size=shape)
  return jnp.asarray(atoms / np.linalg.norm(atoms, axis=0))


def _signals(num=8, seed=1, dictionary=None):
  rng = np.random.default_rng(seed)
  codes = rng.normal(size=(num, CODE_DIM)) * (rng.random((num, CODE_DIM))
                                              < 0.15)
  dictionary = _dictionary() if dictionary is None else dictionary
  return jnp.asarray(codes @ np.asarray(dictionary).T), jnp.asarray(codes)


def np_projected_gradient_weight(dictionary, num_iterations=20000, eta=0.1):
  """Algorithm 1 of ALISTA's Appendix E.1 (their CalculateW.m), in NumPy."""
  d = np.asarray(dictionary)
  w = d.copy()
  identity = np.eye(d.shape[1])
  for _ in range(num_iterations):
    w = w - eta * d @ (d.T @ w - identity)
    w = w + (1 - np.sum(d * w, axis=0)) * d  # Back onto w_i^T d_i = 1.
  return w


def _off_diagonal_energy(matrix):
  return float(np.sum((matrix - np.diag(np.diag(matrix)))**2))


def test_analytic_weight_satisfies_its_constraint_and_is_optimal():
  dictionary = _dictionary()
  weight = lista.analytic_weight(dictionary)
  chex.assert_shape(weight, dictionary.shape)
  np.testing.assert_allclose(jnp.diag(weight.T @ dictionary), 1, atol=1e-10)
  # The closed form is the projected gradient's limit (an independent
  # computation of the same minimizer).
  np.testing.assert_allclose(weight, np_projected_gradient_weight(dictionary),
                             atol=1e-6)
  # D itself is feasible (unit-norm columns), so W does at least as well.
  assert (_off_diagonal_energy(weight.T @ dictionary)
          < 0.9 * _off_diagonal_energy(dictionary.T @ dictionary))


def test_analytic_weight_beats_the_coherence_of_d_on_the_standard_shape():
  dictionary = _dictionary((125, 250), seed=3)
  weight = lista.analytic_weight(dictionary)
  np.testing.assert_allclose(jnp.diag(weight.T @ dictionary), 1, atol=1e-8)
  assert (lista.mutual_coherence(weight, dictionary)
          < lista.mutual_coherence(dictionary, dictionary))
  reference = np.asarray(dictionary.T @ dictionary)
  np.testing.assert_allclose(lista.mutual_coherence(dictionary, dictionary),
                             np.max(np.abs(reference - np.eye(250))))


def _build(kind, dictionary=None, num_stages=NUM_STAGES):
  dictionary = _dictionary() if dictionary is None else dictionary
  return {
      'cp': lambda: lista.LISTACP(dictionary, num_stages=num_stages),
      'cpss': lambda: lista.LISTACP(dictionary, num_stages=num_stages,
                                    support_selection=True),
      'cpss_tied': lambda: lista.LISTACP(dictionary, num_stages=num_stages,
                                         support_selection=True, tied=True),
      'cp_helu_ss': lambda: lista.LISTACP(
          dictionary, num_stages=num_stages, neuron='helu', lam=0.05,
          support_selection=True),
      'alista': lambda: lista.ALISTA(dictionary, num_stages=num_stages),
      'alista_helu': lambda: lista.ALISTA(dictionary, num_stages=num_stages,
                                          neuron='helu', lam=0.05),
      'alista_top_m': lambda: lista.ALISTA(
          dictionary, num_stages=num_stages, neuron='top_m',
          m=[3, 5, 7, 9][:num_stages]),
  }[kind]()


KINDS = ['cp', 'cpss', 'cpss_tied', 'cp_helu_ss', 'alista', 'alista_helu', 'alista_top_m']


def np_coupled_stages(model, x):
  """Stage by stage in NumPy, in evaluation mode, from the model's arrays."""
  d = np.asarray(model.dictionary[...])
  x = np.asarray(x)
  codes = np.zeros(x.shape[:-1] + (d.shape[1],))
  outputs = []
  for k in range(model.num_stages):
    if isinstance(model, lista.ALISTA):
      gain = model.step_size[...][k] * np.asarray(model.weight[...])
    else:
      gain = np.asarray(model.weights[...] if model.tied
                        else model.weights[...][k])
    u = codes + (x - codes @ d.T) @ gain.T
    count = None if model.counts is None else model.counts[k]
    if model.neuron == 'top_m':
      codes = np_top_m(u, count)
    else:
      theta = float(model.threshold[...][k])
      order = np.argsort(-np.abs(u), axis=-1, kind='stable')[..., :count or 0]
      selected = np.zeros(u.shape, bool)
      np.put_along_axis(selected, order, True, -1)
      if model.neuron == 'soft':
        shrunk = np.sign(u) * np.maximum(np.abs(u) - theta, 0)
        codes = np.where(selected & (np.abs(u) > theta), u, shrunk)
      else:
        codes = np.where(selected | (np.abs(u) >= theta), u, 0)
    outputs.append(codes)
  return np.stack(outputs)


@pytest.mark.parametrize('kind', KINDS)
def test_stages_match_a_numpy_reference_and_shapes(kind):
  model = _build(kind)
  model.eval()
  x, _ = _signals()
  all_stages = model(x, return_all_stages=True)
  chex.assert_shape(all_stages, (NUM_STAGES, 8, CODE_DIM))
  chex.assert_trees_all_close(all_stages, jnp.asarray(np_coupled_stages(
      model, x)), atol=1e-10)
  chex.assert_trees_all_close(model(x), all_stages[-1], atol=1e-12)
  chex.assert_trees_all_close(model(x, num_stages=2), all_stages[1],
                              atol=1e-12)
  chex.assert_shape(model(x[0]), (CODE_DIM,))
  assert np.count_nonzero(all_stages[-1]) > 0


@pytest.mark.parametrize('build, matrix, shape', [
    (lista.LISTACP, 'weights', (5, CODE_DIM, SIGNAL_DIM)),
    (functools.partial(lista.LISTACP, tied=True), 'weights',
     (CODE_DIM, SIGNAL_DIM)),
    (lista.shared_lista, 'recurrent_weights', (CODE_DIM, CODE_DIM)),
])
def test_untrained_encoder_is_ista_with_the_papers_step(build, matrix, shape):
  dictionary = _dictionary()
  model = build(dictionary, num_stages=5, lam=0.1)
  x, _ = _signals()
  step = 1 / (1.001 * float(solvers.lipschitz_constant(dictionary)))
  expected = solvers.ista(x, dictionary, 0.1, num_iterations=5,
                          step_size=step).codes
  chex.assert_trees_all_close(model(x), expected, atol=1e-10)
  chex.assert_shape(getattr(model, matrix)[...], shape)
  chex.assert_shape(model.threshold[...], (5,))


def test_shared_lista_stages_match_a_numpy_reference():
  rng = np.random.default_rng(3)
  model = lista.shared_lista(_dictionary(), num_stages=NUM_STAGES)
  # Trained-looking parameters: B, S and distinct thresholds, all random.
  model.input_weights[...] = jnp.asarray(
      rng.normal(size=(CODE_DIM, SIGNAL_DIM)) * 0.3)
  model.recurrent_weights[...] = jnp.asarray(
      rng.normal(size=(CODE_DIM, CODE_DIM)) * 0.1)
  model.threshold[...] = jnp.asarray(rng.uniform(0.05, 0.3, NUM_STAGES))
  x, _ = _signals()
  b, s = np.asarray(model.input_weights[...]), np.asarray(
      model.recurrent_weights[...])
  codes, expected = np.zeros((8, CODE_DIM)), []
  for theta in np.asarray(model.threshold[...]):
    u = np.asarray(x) @ b.T + codes @ s.T
    codes = np.sign(u) * np.maximum(np.abs(u) - theta, 0)
    expected.append(codes)
  all_stages = model(x, return_all_stages=True)
  chex.assert_trees_all_close(all_stages, jnp.asarray(np.stack(expected)),
                              atol=1e-10)
  chex.assert_trees_all_close(model(x, num_stages=2), all_stages[1],
                              atol=1e-12)
  grads = nnx.grad(lambda m: jnp.sum(m(x, return_all_stages=True)**2))(model)
  for leaf in jax.tree.leaves(grads):
    assert np.all(np.isfinite(leaf)) and np.any(leaf != 0)
  stages = model.parameter_stages()
  assert set(stages) == set(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
  assert stages['input_weights'] == 1 and stages['recurrent_weights'] == 2
  np.testing.assert_array_equal(stages['threshold'],
                                np.arange(1, NUM_STAGES + 1))


def test_support_selection_counts_grow_with_the_stage():
  model = lista.LISTACP(_dictionary((50, 500)), num_stages=16,
                        support_selection=True)
  assert model.counts == ops.support_selection_counts(16, 500)
  assert model.counts[0] == 6 and model.counts[-1] == 65


@pytest.mark.parametrize('kind', KINDS)
def test_gradients_are_finite_and_reach_every_parameter(kind):
  model = _build(kind)
  x, codes = _signals()

  def loss(model):
    return jnp.mean(jnp.sum((model(x, return_all_stages=True) - codes)**2,
                            axis=-1))

  grads = nnx.grad(loss)(model)
  leaves = jax.tree.leaves(grads)
  assert leaves
  chex.assert_tree_all_finite(leaves)
  for leaf in leaves:
    assert np.any(leaf != 0)
  assert set(model.parameter_stages()) == set(
      nnx.to_pure_dict(nnx.state(model, nnx.Param)))


def test_tied_weights_are_stage_one_parameters():
  model = _build('cpss_tied')
  stages = model.parameter_stages()
  assert stages['weights'] == 1
  np.testing.assert_array_equal(stages['threshold'],
                                np.arange(1, NUM_STAGES + 1))


def test_fixed_matrices_are_not_parameters():
  model = _build('alista')
  assert set(nnx.to_pure_dict(nnx.state(model, nnx.Param))) == {
      'step_size', 'threshold'}
  assert set(nnx.to_pure_dict(nnx.state(model, lista.FixedMatrix))) == {
      'dictionary', 'weight'}


def test_deep_l0_with_support_selection_and_msparse_with_m_per_stage():
  dictionary = _dictionary()
  x, _ = _signals()
  l0 = models.DeepL0Encoder.from_dictionary(
      dictionary, lam=0.05, num_stages=3, tied=False, support_selection=True,
      percent=10.0, max_percent=20.0)
  l0.eval()
  assert l0.support_counts == (3, 6, 6)
  stages = l0(x, return_all_stages=True)
  # Stage 1 by hand: the 3 largest of W x pass, the others hard-thresholded.
  u = np.asarray(x @ l0.input_weights[...].T)
  theta = np.asarray(l0.threshold[...][0])
  order = np.argsort(-np.abs(u), axis=-1, kind='stable')[:, :3]
  selected = np.zeros(u.shape, bool)
  np.put_along_axis(selected, order, True, -1)
  np.testing.assert_allclose(
      stages[0], np.where(selected | (np.abs(u) >= theta), u, 0), atol=1e-12)
  msparse = models.DeepMSparseEncoder.from_dictionary(
      dictionary, m=(2, 4, 6), num_stages=3, tied=False)
  counts = np.count_nonzero(msparse(x, return_all_stages=True), axis=-1)
  assert np.all(counts <= np.asarray([2, 4, 6])[:, None])
  assert np.all(counts.max(axis=1) == [2, 4, 6])
  with pytest.raises(ValueError, match='one entry per stage'):
    models.DeepMSparseEncoder.from_dictionary(dictionary, m=(2, 4),
                                              num_stages=3)


@pytest.mark.parametrize('build,match', [
    (lambda d: lista.LISTACP(d, neuron='relu'), 'neuron'),
    (lambda d: lista.LISTACP(d, neuron='top_m'), 'needs m'),
    (lambda d: lista.LISTACP(d, m=3), 'only for'),
    (lambda d: lista.LISTACP(d, tied='yes'), 'tied'),
    (lambda d: lista.ALISTA(d, num_stages=2, neuron='top_m', m=[1, 2, 3]),
     'one entry per stage'),
    (lambda d: lista.ALISTA(d, lam=-1.0), 'lam'),
    (lambda d: lista.ALISTA(d, step_size=0.0), 'step_size'),
    (lambda d: lista.ALISTA(d[0]), 'dictionary must have shape'),
    (lambda d: lista.LISTACP(d, num_stages=0), 'num_stages'),
])
def test_bad_arguments_raise(build, match):
  with pytest.raises(ValueError, match=match):
    build(_dictionary())


def test_wrong_signal_dimension_raises():
  with pytest.raises(ValueError, match='inputs must have shape'):
    _build('cp')(jnp.ones((2, SIGNAL_DIM + 1)))
