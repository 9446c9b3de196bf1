"""Tests of l0enc.models: shapes, the IHT/ISTA initialization, modes, errors."""

import chex
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l0enc import models
from l0enc import solvers
from references import np_top_m

SIGNAL_DIM, CODE_DIM, M, LAM = 12, 20, 4, 0.05


@pytest.fixture(autouse=True)
def _enable_x64_and_exact_matmuls():
  # Full-precision float32 matmuls (no TF32 on GPUs), so that comparisons of
  # differently batched computations hold on every platform.
  with jax.enable_x64(True), jax.default_matmul_precision('highest'):
    yield


def _dictionary(dtype=jnp.float64, seed=0):
  atoms = np.random.default_rng(seed).normal(size=(SIGNAL_DIM, CODE_DIM))
  return jnp.asarray(atoms / np.linalg.norm(atoms, axis=0), dtype)


def _signals(shape=(32,), dtype=jnp.float64, seed=1):
  return jnp.asarray(
      np.random.default_rng(seed).normal(size=shape + (SIGNAL_DIM,)), dtype)


def _random_model(kind, *, num_stages=2, tied=True, dtype=jnp.float32):
  rngs = nnx.Rngs(0)
  if kind == 'mlp':
    return models.MLPEncoder(SIGNAL_DIM, CODE_DIM, param_dtype=dtype,
                             rngs=rngs)
  kwargs = dict(num_stages=num_stages, tied=tied, param_dtype=dtype,
                rngs=rngs)
  if kind == 'msparse':
    return models.DeepMSparseEncoder(SIGNAL_DIM, CODE_DIM, m=M, **kwargs)
  return {'lista': models.LISTA, 'l0': models.DeepL0Encoder}[kind](
      SIGNAL_DIM, CODE_DIM, **kwargs)


# NumPy references, written independently of the library.


def np_iterate(x, dictionary, num_iterations, shrink, step_size=None):
  """`a <- shrink(a + mu D^T (x - D a), mu)` from a = 0."""
  x, dictionary = np.asarray(x), np.asarray(dictionary)
  if step_size is None:
    step_size = 1 / np.linalg.norm(dictionary, 2)**2
  codes = np.zeros(x.shape[:-1] + dictionary.shape[1:])
  for _ in range(num_iterations):
    u = codes + step_size * (x - codes @ dictionary.T) @ dictionary
    codes = shrink(u, step_size)
  return codes


def np_hard(u, step_size):
  return np.where(np.abs(u) >= np.sqrt(2 * LAM * step_size), u, 0)


def np_soft(u, step_size):
  return np.sign(u) * np.maximum(np.abs(u) - LAM * step_size, 0)


def np_top_m_shrink(u, step_size):
  del step_size
  return np_top_m(u, M)


# Shapes and dtypes.


@pytest.mark.parametrize('tied', [True, False])
@pytest.mark.parametrize('num_stages', [1, 2, 3, 4])
@pytest.mark.parametrize('kind', ['lista', 'l0', 'msparse'])
def test_unrolled_shapes(kind, num_stages, tied):
  model = _random_model(kind, num_stages=num_stages, tied=tied)
  stages = () if tied else (num_stages - 1,)
  chex.assert_shape(model.input_weights[...], (CODE_DIM, SIGNAL_DIM))
  chex.assert_shape(model.recurrent_weights[...],
                    stages + (CODE_DIM, CODE_DIM))
  if kind != 'msparse':
    chex.assert_shape(model.threshold[...],
                      (() if tied else (num_stages,)) + (CODE_DIM,))
  codes = model(_signals((2, 3), jnp.float32))
  chex.assert_shape(codes, (2, 3, CODE_DIM))
  chex.assert_tree_all_finite(codes)
  if kind == 'msparse':
    assert np.all(np.count_nonzero(codes, axis=-1) <= M)


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.float64])
@pytest.mark.parametrize('kind', ['lista', 'l0', 'msparse', 'mlp'])
def test_dtypes_and_leading_axes(kind, dtype):
  model = _random_model(kind, dtype=dtype)
  model.eval()
  for value in jax.tree.leaves(nnx.state(model, nnx.Param)):
    chex.assert_type(value, dtype)
  x = _signals((2, 3), dtype)
  codes = model(x)
  chex.assert_shape(codes, (2, 3, CODE_DIM))
  chex.assert_type(codes, dtype)
  # A single signal (no batch axis) is encoded as in a batch.
  chex.assert_trees_all_close(model(x[1, 2]), codes[1, 2], atol=1e-6)


def test_mlp_layers():
  model = _random_model('mlp')
  assert len(model.hidden_layers) == 3
  assert [d.rate for d in model.dropouts] == [0.1, 0.1, 0.5]
  chex.assert_shape(model.output_layer.kernel[...], (CODE_DIM, CODE_DIM))


# The dictionary initialization is K iterations of the iterative algorithm.


@pytest.mark.parametrize('tied', [True, False])
@pytest.mark.parametrize('num_stages', [1, 2, 3, 4])
@pytest.mark.parametrize('kind', ['l0', 'msparse', 'lista'])
def test_from_dictionary_reproduces_iterations(kind, num_stages, tied):
  dictionary, x = _dictionary(), _signals()
  build = {
      'l0': lambda: models.DeepL0Encoder.from_dictionary(
          dictionary, lam=LAM, num_stages=num_stages, tied=tied),
      'msparse': lambda: models.DeepMSparseEncoder.from_dictionary(
          dictionary, m=M, num_stages=num_stages, tied=tied),
      'lista': lambda: models.LISTA.from_dictionary(
          dictionary, lam=LAM, num_stages=num_stages, tied=tied),
  }[kind]
  model = build()
  model.eval()
  codes = model(x)
  chex.assert_type(codes, jnp.float64)
  shrink = {'l0': np_hard, 'msparse': np_top_m_shrink, 'lista': np_soft}[kind]
  reference = np_iterate(x, dictionary, num_stages, shrink)
  if kind == 'lista':
    solver = solvers.ista(x, dictionary, LAM, num_iterations=num_stages)
  else:
    solver = solvers.iht(x, dictionary, num_iterations=num_stages,
                         **({'m': M} if kind == 'msparse' else {'lam': LAM}))
  for expected in [reference, solver.codes]:
    np.testing.assert_array_equal(codes != 0, expected != 0)
    chex.assert_trees_all_close(codes, jnp.asarray(expected), atol=1e-12,
                                rtol=1e-10)
  # Enough happens for the test to mean something: sparse, nonzero codes.
  assert 0 < np.count_nonzero(reference) < reference.size


def np_stage_composition(model, x, num_stages):
  """Stage by stage in NumPy: z_1 = N(W x), z_t = N(W x + S_t z_{t-1}).

  The neuron is the evaluation-mode one (exact hard threshold for Deep l0).
  Returns the list of the stages' outputs.
  """
  p = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model, nnx.Param)))
  drive = np.asarray(x) @ p['input_weights'].T

  def per_stage(name, t):  # t: 0-based stage index.
    value = p[name]
    if name == 'recurrent_weights':
      return value if model.tied else value[t - 1]
    return value if model.tied_neurons else value[t]

  def neuron(u, t):
    if isinstance(model, models.LISTA):
      threshold = per_stage('threshold', t)
      return np.sign(u) * np.maximum(np.abs(u) - threshold, 0)
    if isinstance(model, models.DeepL0Encoder):
      return np.where(np.abs(u) >= np.abs(per_stage('threshold', t)), u, 0)
    return np_top_m(u, M)

  outputs = [neuron(drive, 0)]
  for t in range(1, num_stages):
    outputs.append(neuron(
        drive + outputs[-1] @ per_stage('recurrent_weights', t).T, t))
  return outputs


@pytest.mark.parametrize('tied', [True, False])
@pytest.mark.parametrize('kind', ['lista', 'l0', 'msparse'])
def test_all_stages_equal_the_composition_of_single_stages(kind, tied):
  num_stages = 4
  model = _random_model(kind, num_stages=num_stages, tied=tied,
                        dtype=jnp.float64)
  model.eval()
  x = _signals((2, 3))
  all_stages = model(x, return_all_stages=True)
  chex.assert_shape(all_stages, (num_stages, 2, 3, CODE_DIM))
  reference = np_stage_composition(model, x, num_stages)
  for t in range(num_stages):
    chex.assert_trees_all_close(all_stages[t], jnp.asarray(reference[t]),
                                atol=1e-10)
    # The first t + 1 stages alone give the same codes.
    chex.assert_trees_all_close(model(x, num_stages=t + 1), all_stages[t],
                                atol=1e-12)
  chex.assert_trees_all_close(model(x), all_stages[-1], atol=1e-12)
  # The references are not trivial: nonzero codes that change per stage.
  assert np.count_nonzero(reference[-1]) > 0
  assert not np.allclose(reference[0], reference[-1])


@pytest.mark.parametrize('tied, tied_thresholds, scalar_threshold', [
    (True, False, True),  # The field's LISTA (l0enc.lista.shared_lista).
    (True, False, False), (False, True, False)])
def test_lista_thresholds_tied_apart_from_s(tied, tied_thresholds,
                                            scalar_threshold):
  num_stages = 4
  model = models.LISTA(SIGNAL_DIM, CODE_DIM, num_stages=num_stages, tied=tied,
                       tied_thresholds=tied_thresholds,
                       scalar_threshold=scalar_threshold,
                       param_dtype=jnp.float64, rngs=nnx.Rngs(0))
  shape = ((() if tied_thresholds else (num_stages,))
           + (() if scalar_threshold else (CODE_DIM,)))
  chex.assert_shape(model.threshold[...], shape)
  chex.assert_shape(model.recurrent_weights[...],
                    (() if tied else (num_stages - 1,)) + (CODE_DIM,) * 2)
  # Distinct thresholds, so that a wrong stage's shows.
  model.threshold[...] = jnp.asarray(
      np.random.default_rng(2).uniform(0.05, 0.5, shape))
  x = _signals((3,))
  all_stages = model(x, return_all_stages=True)
  reference = np_stage_composition(model, x, num_stages)
  chex.assert_trees_all_close(all_stages, jnp.asarray(np.stack(reference)),
                              atol=1e-10)
  assert np.count_nonzero(reference[-1]) > 0
  stages = model.parameter_stages()
  np.testing.assert_array_equal(
      stages['recurrent_weights'], 2 if tied else np.arange(2, 5))
  np.testing.assert_array_equal(
      stages['threshold'], 1 if tied_thresholds else np.arange(1, 5))


@pytest.mark.parametrize('num_stages', [0, 5, 2.5])
def test_bad_num_stages_raises(num_stages):
  model = _random_model('lista', num_stages=4, tied=False)
  with pytest.raises(ValueError, match='num_stages'):
    model(_signals(), num_stages=num_stages)


def test_from_dictionary_parameters_and_step_size():
  dictionary, x = _dictionary(), _signals()
  lipschitz = np.linalg.norm(np.asarray(dictionary), 2)**2
  step_size = 0.5 / lipschitz
  model = models.DeepL0Encoder.from_dictionary(
      dictionary, lam=LAM, num_stages=3, step_size=step_size)
  chex.assert_trees_all_close(model.input_weights[...],
                              step_size * dictionary.T)
  chex.assert_trees_all_close(
      model.recurrent_weights[...],
      jnp.eye(CODE_DIM) - step_size * dictionary.T @ dictionary)
  chex.assert_trees_all_close(
      model.threshold[...],
      jnp.full((CODE_DIM,), np.sqrt(2 * LAM * step_size)))
  model.eval()
  chex.assert_trees_all_close(
      model(x), jnp.asarray(np_iterate(x, dictionary, 3, np_hard, step_size)),
      atol=1e-12)
  lista = models.LISTA.from_dictionary(dictionary, lam=LAM)
  chex.assert_trees_all_close(lista.threshold[...],
                              jnp.full((CODE_DIM,), LAM / lipschitz))


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.float64])
def test_from_dictionary_dtype(dtype):
  model = models.DeepL0Encoder.from_dictionary(_dictionary(dtype), lam=LAM)
  for value in jax.tree.leaves(nnx.state(model)):
    chex.assert_type(value, dtype)
  model = models.DeepL0Encoder.from_dictionary(
      _dictionary(), lam=LAM, param_dtype=jnp.float32)
  chex.assert_type(model.input_weights[...], jnp.float32)


# Training and evaluation modes, sigma.


def test_helu_sigma_in_training_mode_and_exact_helu_in_eval_mode():
  model = models.DeepL0Encoder.from_dictionary(_dictionary(), lam=LAM)
  x = _signals((256,))
  assert not model.deterministic and float(model.sigma[...]) == 0.2
  with_ramp = model(x)
  model.eval()
  exact = model(x)
  assert not np.allclose(with_ramp, exact)
  models.set_helu_sigma(model, 0.1)  # Ignored in evaluation mode.
  chex.assert_trees_all_equal(model(x), exact)
  model.train()
  models.set_helu_sigma(model, 0.0)
  chex.assert_trees_all_equal(model(x), exact)


def test_sigma_changes_without_recompiling():
  model = models.DeepL0Encoder.from_dictionary(_dictionary(), lam=LAM)
  x = _signals((256,))

  @jax.jit
  def encode(graphdef, state, x):
    return nnx.merge(graphdef, state)(x)

  outputs = []
  for sigma in [0.2, 0.02, 0.0]:
    models.set_helu_sigma(model, sigma)
    outputs.append(encode(*nnx.split(model), x))
  assert encode._cache_size() == 1
  assert not np.allclose(outputs[0], outputs[1])
  model.eval()
  chex.assert_trees_all_close(outputs[2], model(x))


def test_set_helu_sigma_counts_nested_neurons():

  class TwoEncoders(nnx.Module):

    def __init__(self):
      self.first = models.DeepL0Encoder(SIGNAL_DIM, CODE_DIM, rngs=nnx.Rngs(0))
      self.second = models.DeepL0Encoder(SIGNAL_DIM, CODE_DIM,
                                         rngs=nnx.Rngs(1))

  pair = TwoEncoders()
  assert models.set_helu_sigma(pair, 0.05) == 2
  assert float(pair.second.sigma[...]) == pytest.approx(0.05)
  assert models.set_helu_sigma(_random_model('mlp'), 0.05) == 0
  assert models.set_helu_sigma(_random_model('lista'), 0.05) == 0


def test_sigma_is_state_not_a_parameter():
  model = _random_model('l0')
  assert 'sigma' not in nnx.state(model, nnx.Param)
  assert 'sigma' in nnx.state(model, models.HeluSigma)


def test_mlp_dropout_only_in_training_mode():
  model = _random_model('mlp')
  x = _signals((64,), jnp.float32)
  first, second = model(x), model(x)
  assert not np.allclose(first, second)  # A fresh mask per call.
  model.eval()
  deterministic = model(x)
  chex.assert_trees_all_equal(deterministic, model(x))
  assert not np.allclose(first, deterministic)
  without_dropout = models.MLPEncoder(
      SIGNAL_DIM, CODE_DIM, dropout_rates=(0.0, 0.0, 0.0), rngs=nnx.Rngs(0))
  chex.assert_trees_all_close(without_dropout(x), deterministic)


# Gradients.


@pytest.mark.parametrize('kind, tied', [
    ('lista', True), ('lista', False), ('l0', True), ('l0', False),
    ('msparse', True), ('msparse', False), ('mlp', True)])
def test_gradients_reach_every_parameter(kind, tied):
  model = _random_model(kind, num_stages=2, tied=tied)
  if kind == 'l0':
    # Thresholds near the pre-activations put entries on the ramps.
    model.threshold[...] = jnp.full_like(model.threshold[...], 1.0)
  x = _signals((64,), jnp.float32)
  grads = nnx.grad(lambda model: jnp.sum(model(x)**2))(model)
  for path, grad in nnx.to_flat_state(grads):
    value = grad.get_value()
    chex.assert_tree_all_finite(value)
    assert np.any(value != 0), path


# Bad input.


@pytest.mark.parametrize('build, match', [
    (lambda: models.DeepMSparseEncoder(SIGNAL_DIM, CODE_DIM, m=0,
                                       rngs=nnx.Rngs(0)), 'm must be'),
    (lambda: models.DeepMSparseEncoder(SIGNAL_DIM, CODE_DIM, m=CODE_DIM + 1,
                                       rngs=nnx.Rngs(0)), 'm must be'),
    (lambda: models.DeepMSparseEncoder.from_dictionary(_dictionary(), m=2.5),
     'integer'),
    (lambda: models.LISTA(SIGNAL_DIM, CODE_DIM, num_stages=0,
                          rngs=nnx.Rngs(0)), 'num_stages'),
    (lambda: models.DeepL0Encoder(SIGNAL_DIM, CODE_DIM, threshold=0.0,
                                  rngs=nnx.Rngs(0)), 'threshold'),
    (lambda: models.DeepL0Encoder(SIGNAL_DIM, CODE_DIM, sigma=-0.1,
                                  rngs=nnx.Rngs(0)), 'sigma'),
    (lambda: models.DeepL0Encoder(SIGNAL_DIM, CODE_DIM, sigma=1.0,
                                  rngs=nnx.Rngs(0)), 'sigma'),
    (lambda: models.DeepL0Encoder.from_dictionary(_dictionary(), lam=0.0),
     'lam'),
    (lambda: models.LISTA.from_dictionary(_dictionary(), lam=-1.0), 'lam'),
    (lambda: models.DeepL0Encoder.from_dictionary(
        _dictionary(), lam=LAM, step_size=0.0), 'step_size'),
    (lambda: models.DeepL0Encoder.from_dictionary(jnp.ones(5), lam=LAM),
     'dictionary'),
    (lambda: models.DeepL0Encoder.from_dictionary(
        _dictionary().at[0, 0].set(jnp.nan), lam=LAM), 'dictionary'),
    (lambda: models.MLPEncoder(SIGNAL_DIM, CODE_DIM, dropout_rates=(1.0,),
                               rngs=nnx.Rngs(0)), 'dropout'),
    (lambda: models.set_helu_sigma(_random_model('l0'), 1.5), 'sigma'),
])
def test_bad_arguments_raise(build, match):
  with pytest.raises(ValueError, match=match):
    build()


@pytest.mark.parametrize('kind', ['lista', 'l0', 'msparse', 'mlp'])
def test_wrong_signal_dimension_raises(kind):
  model = _random_model(kind)
  with pytest.raises(ValueError, match=f'shape \\(..., {SIGNAL_DIM}\\)'):
    model(jnp.ones((4, SIGNAL_DIM + 1)))


@pytest.mark.parametrize('kind', ['lista', 'l0', 'msparse', 'mlp'])
def test_nan_rows_give_nan_codes_never_plausible_ones(kind):
  model = _random_model(kind)
  model.eval()
  x = _signals((6,), jnp.float32)
  poisoned = x.at[2].set(jnp.nan)
  with pytest.raises(ValueError, match='inputs holds NaN'):
    model(poisoned)  # Concrete inputs are checked.
  # Traced inputs cannot be: NaN propagates to the row's codes (to the M
  # kept entries of an M-sparse code), the other rows are unaffected.
  encode = nnx.jit(lambda model, x: model(x))
  codes, clean = encode(model, poisoned), encode(model, x)
  assert np.isnan(codes[2]).sum() == (M if kind == 'msparse' else CODE_DIM)
  np.testing.assert_array_equal(np.delete(codes, 2, 0), np.delete(clean, 2, 0))


@pytest.mark.parametrize('cls, kwargs', [
    (models.DeepL0Encoder, dict(lam=LAM)), (models.LISTA, dict(lam=LAM)),
    (models.DeepMSparseEncoder, dict(m=M))])
def test_from_dictionary_casts_an_integer_dictionary(cls, kwargs):
  integers = np.round(3 * np.asarray(_dictionary())).astype(np.int32)
  with jax.enable_x64(False):
    encoder = cls.from_dictionary(integers, **kwargs)
    reference = cls.from_dictionary(integers.astype(np.float32), **kwargs)
  assert encoder.input_weights[...].dtype == jnp.float32
  assert np.any(encoder.input_weights[...] != 0)
  chex.assert_trees_all_equal(nnx.state(encoder), nnx.state(reference))


@pytest.mark.parametrize('dictionary, match', [
    (np.zeros((SIGNAL_DIM, CODE_DIM)), 'dictionary is all zero'),
    (np.ones((SIGNAL_DIM, CODE_DIM), np.complex64), 'dictionary has dtype '
     'complex64'),
])
def test_from_dictionary_refuses_unusable_dictionaries(dictionary, match):
  with pytest.raises(ValueError, match=match):
    models.DeepL0Encoder.from_dictionary(dictionary, lam=LAM)


def test_complex_inputs_are_refused():
  model = _random_model('l0')
  with pytest.raises(ValueError, match='inputs has dtype complex128'):
    model(np.ones((2, SIGNAL_DIM), np.complex128))


def test_a_bad_sigma_set_under_jit_gives_nan_codes():
  model = models.DeepL0Encoder.from_dictionary(_dictionary(jnp.float32),
                                               lam=LAM)
  x = _signals((4,), jnp.float32)

  @nnx.jit
  def encode(model, sigma):
    models.set_helu_sigma(model, sigma)
    return model(x)

  assert np.all(np.isfinite(encode(model, 0.1)))
  assert np.all(np.isnan(encode(model, 1.5)))


# Our Deep l0 variant: rows of W normalized (`input_norm`).


@pytest.mark.parametrize('tied', [True, False])
@pytest.mark.parametrize('num_stages', [1, 2, 3])
@pytest.mark.parametrize('input_norm', ['fixed', 'learned'])
def test_normalized_input_weights_start_as_the_papers_encoder(
    input_norm, num_stages, tied):
  # Before training the variant is the paper's form: K IHT iterations.
  dictionary, x = _dictionary(), _signals()
  paper = models.DeepL0Encoder.from_dictionary(
      dictionary, lam=LAM, num_stages=num_stages, tied=tied)
  ours = models.DeepL0Encoder.from_dictionary(
      dictionary, lam=LAM, num_stages=num_stages, tied=tied,
      input_norm=input_norm)
  paper.eval()
  ours.eval()
  step_size = 1 / np.linalg.norm(np.asarray(dictionary), 2)**2
  chex.assert_trees_all_close(ours.effective_input_weights(),
                              step_size * np.asarray(dictionary).T)
  chex.assert_trees_all_close(
      ours.input_gain[...], step_size * np.linalg.norm(dictionary, axis=0))
  chex.assert_trees_all_close(ours(x), paper(x))
  chex.assert_trees_all_close(ours(x), np_iterate(x, dictionary, num_stages,
                                                  np_hard), atol=1e-10)


@pytest.mark.parametrize('input_norm', ['fixed', 'learned'])
def test_normalized_input_weights_ignore_the_scale_of_v(input_norm):
  # W = diag(g) V / ||V||: scaling V changes nothing, the row norms are g.
  model = models.DeepL0Encoder(SIGNAL_DIM, CODE_DIM, input_norm=input_norm,
                               rngs=nnx.Rngs(0))
  model.eval()
  x = _signals((8,), jnp.float32)
  before = model(x)
  rng = np.random.default_rng(3)
  model.input_weights[...] = model.input_weights[...] * rng.uniform(
      0.5, 4.0, size=(CODE_DIM, 1)).astype(np.float32)
  chex.assert_trees_all_close(model(x), before, rtol=1e-5)
  chex.assert_trees_all_close(
      np.linalg.norm(model.effective_input_weights(), axis=1),
      model.input_gain[...], rtol=1e-5)


@pytest.mark.parametrize('input_norm, trained', [('fixed', False),
                                                 ('learned', True)])
def test_the_gain_is_trained_only_when_learned(input_norm, trained):
  model = models.DeepL0Encoder(SIGNAL_DIM, CODE_DIM, threshold=1.0,
                               input_norm=input_norm, rngs=nnx.Rngs(0))
  chex.assert_shape(model.input_gain[...], (CODE_DIM,))
  assert isinstance(model.input_gain, nnx.Param) == trained
  x = _signals((64,), jnp.float32)
  grads = nnx.grad(lambda model: jnp.sum(model(x)**2))(model)
  names = {path[0] for path, _ in nnx.to_flat_state(grads)}
  assert ('input_gain' in names) == trained
  for path, grad in nnx.to_flat_state(grads):
    chex.assert_tree_all_finite(grad.get_value())
    assert np.any(grad.get_value() != 0), path


def test_gradient_of_v_is_orthogonal_to_its_rows_and_matches_differences():
  # A property and finite differences: only the direction of each row of V
  # acts, so d loss / d V_i is orthogonal to V_i.
  model = models.DeepL0Encoder(SIGNAL_DIM, CODE_DIM, threshold=1.0,
                               sigma=0.5, input_norm='learned',
                               param_dtype=jnp.float64, rngs=nnx.Rngs(0))
  x = _signals((16,))
  loss = lambda model: jnp.sum(jnp.tanh(model(x)))
  v = model.input_weights[...]
  grad = nnx.grad(loss)(model).input_weights[...]
  chex.assert_trees_all_close(jnp.sum(grad * v, axis=1),
                              jnp.zeros(CODE_DIM), atol=1e-10)
  direction = jnp.asarray(np.random.default_rng(4).normal(size=v.shape))
  eps = 1e-6
  losses = []
  for sign in (1, -1):
    model.input_weights[...] = v + sign * eps * direction
    losses.append(loss(model))
  numeric = (losses[0] - losses[1]) / (2 * eps)
  np.testing.assert_allclose(jnp.sum(grad * direction), numeric, rtol=1e-5)


def test_bad_input_norm_raises():
  with pytest.raises(ValueError, match='input_norm'):
    models.DeepL0Encoder(SIGNAL_DIM, CODE_DIM, input_norm='batch',
                         rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='input_norm'):
    models.DeepL0Encoder(SIGNAL_DIM, CODE_DIM, input_norm='fixed',
                         input_init=nnx.initializers.zeros, rngs=nnx.Rngs(0))


@pytest.mark.parametrize('num_stages', [1, 2, 3])
def test_fully_connected_reference_matches_numpy(num_stages):
  # n -> p, then K - 1 layers p -> p, a ReLU after each: the task tables'
  # reference with the unrolled encoders' layer sizes.
  model = models.MLPEncoder(SIGNAL_DIM, CODE_DIM,
                            dropout_rates=(0.0,) * (num_stages - 1),
                            relu_output=True, rngs=nnx.Rngs(0))
  layers = [*model.hidden_layers, model.output_layer]
  assert [layer.kernel[...].shape for layer in layers] == (
      [(SIGNAL_DIM, CODE_DIM)] + [(CODE_DIM, CODE_DIM)] * (num_stages - 1))
  x = np.asarray(_signals((8,), jnp.float32))
  expected = x
  for layer in layers:
    expected = np.maximum(
        expected @ np.asarray(layer.kernel[...]) + np.asarray(
            layer.bias[...]), 0)
  chex.assert_trees_all_close(model(jnp.asarray(x)), expected, rtol=1e-5,
                              atol=1e-6)


# Our Deep l0 variant: a threshold floor kappa RMS(u) (`threshold_floor`).


def _np_floor_stage(u, theta, kappa):
  threshold = np.maximum(np.abs(theta), kappa * np.sqrt(
      np.mean(u**2, axis=-1, keepdims=True)))
  return np.where(np.abs(u) >= threshold, u, 0)


@pytest.mark.parametrize('kappa', [0.5, 2**0.5, 2.0])
def test_threshold_floor_matches_numpy_and_bounds_the_nonzeros(kappa):
  # Random weights and tiny thresholds: without the floor nearly every entry
  # passes; with it at most p / kappa^2 per stage (Markov's inequality).
  dictionary, x = _dictionary(), _signals((64,))
  model = models.DeepL0Encoder.from_dictionary(
      dictionary, lam=1e-8, num_stages=2, threshold_floor=kappa)
  model.eval()
  w = np.asarray(model.input_weights[...])
  s = np.asarray(model.recurrent_weights[...])
  theta = np.asarray(model.threshold[...])
  first = _np_floor_stage(np.asarray(x) @ w.T, theta, kappa)
  second = _np_floor_stage(np.asarray(x) @ w.T + first @ s.T, theta, kappa)
  stages = model(x, return_all_stages=True)
  chex.assert_trees_all_close(stages[0], first, atol=1e-12)
  chex.assert_trees_all_close(stages[1], second, atol=1e-12)
  assert np.all(np.count_nonzero(stages, axis=-1) <= CODE_DIM / kappa**2)
  paper = models.DeepL0Encoder.from_dictionary(dictionary, lam=1e-8)
  paper.eval()
  assert np.mean(np.count_nonzero(paper(x), -1)) > CODE_DIM / 2


def test_threshold_floor_zero_is_the_papers_form_and_inactive_floors_too():
  dictionary, x = _dictionary(), _signals()
  paper = models.DeepL0Encoder.from_dictionary(dictionary, lam=LAM)
  paper.eval()
  for kappa in (0.0, 1e-6):  # A floor below every theta changes nothing.
    ours = models.DeepL0Encoder.from_dictionary(dictionary, lam=LAM,
                                                threshold_floor=kappa)
    ours.eval()
    chex.assert_trees_all_close(ours(x), paper(x))


def test_threshold_floor_codes_are_positively_homogeneous_where_it_binds():
  # Where the floor binds the threshold scales with u, so z(c x) = c z(x).
  model = models.DeepL0Encoder(SIGNAL_DIM, CODE_DIM, threshold=1e-9,
                               threshold_floor=1.0, param_dtype=jnp.float64,
                               rngs=nnx.Rngs(0))
  model.eval()
  x = _signals((8,))
  chex.assert_trees_all_close(model(3.0 * x), 3.0 * model(x), rtol=1e-10)


def test_threshold_floor_gradients_are_finite_and_reach_every_parameter():
  model = models.DeepL0Encoder(SIGNAL_DIM, CODE_DIM, threshold=1.0,
                               threshold_floor=0.5, rngs=nnx.Rngs(0))
  x = _signals((64,), jnp.float32)
  grads = nnx.grad(lambda model: jnp.sum(model(x)**2))(model)
  for path, grad in nnx.to_flat_state(grads):
    chex.assert_tree_all_finite(grad.get_value())
    assert np.any(grad.get_value() != 0), path
  with pytest.raises(ValueError, match='threshold_floor'):
    models.DeepL0Encoder(SIGNAL_DIM, CODE_DIM, threshold_floor=-1.0,
                         rngs=nnx.Rngs(0))
