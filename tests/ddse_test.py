"""Tests of DDSE and its baselines I-V (DDSE paper)."""

import chex
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ddse_models import CLASSES, K, M, N, S
from ddse_models import perturb_and_project, random_signals, small_ddse
from l0enc import ddse
from l0enc import dictionary
from l0enc import transforms


def np_soft_threshold(u, threshold):
  return np.sign(u) * np.maximum(np.abs(u) - np.abs(threshold), 0)


def np_ddse_features(model, x, shortcuts):
  """Eq. (5) with a Python loop over the k stages, in float64."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64),
                   nnx.to_pure_dict(nnx.state(model)))
  drive = (np.asarray(x, np.float64) - p['pca_mean']) @ p['pca_components'] @ (
      p['input_weights'].T)
  z = np_soft_threshold(drive, p['threshold'][0])
  for i in range(K):
    feedback = p['analysis_weights'][i] @ p['synthesis_weights'][i] @ z.T
    z = np_soft_threshold(drive + shortcuts * z - feedback.T,
                          p['threshold'][i + 1])
  return z


@pytest.mark.parametrize('kind', ddse.MODEL_KINDS)
def test_shapes_and_dtypes_of_all_models(kind):
  batch_shape = (2, 3)
  model = ddse.make_model(kind, N, M, sparsity=S, num_stages=K,
                          num_classes=CLASSES, rngs=nnx.Rngs(0))
  x = jnp.ones(batch_shape + (N,))
  logits, features = model(x), model.features(x)
  chex.assert_shape(logits, batch_shape + (CLASSES,))
  chex.assert_shape(features, batch_shape + (M,))
  chex.assert_type([logits, features], jnp.float32)
  for param in jax.tree.leaves(nnx.state(model, nnx.Param)):
    chex.assert_type(param, jnp.float32)
  headless = ddse.make_model(kind, N, M, sparsity=S, num_stages=K,
                             rngs=nnx.Rngs(0))
  chex.assert_shape(headless(x), batch_shape + (M,))


@pytest.mark.parametrize('kind,shapes', [
    ('fc', {'input_weights': (M, N), 'input_bias': (M,),
            'hidden_weights': (K, M, M), 'hidden_bias': (K, M)}),
    ('lista_dropout', {'input_weights': (M, N), 'recurrent_weights': (K, M, M),
                       'threshold': (K + 1, M)}),
    ('ddse', {'input_weights': (M, N), 'synthesis_weights': (K, N, M),
              'analysis_weights': (K, M, N), 'threshold': (K + 1, M)}),
])
def test_parameter_paths_and_shapes(kind, shapes):
  model = ddse.make_model(kind, N, M, sparsity=S, num_stages=K,
                          num_classes=CLASSES, rngs=nnx.Rngs(0))
  params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  expected = shapes | {'head': {'kernel': (M, CLASSES), 'bias': (CLASSES,)}}
  assert jax.tree.map(jnp.shape, params) == expected


@pytest.mark.parametrize('normalize', [True, False])
def test_init_is_s_ones_per_column_shared_by_all_weights(normalize):
  model = ddse.DDSE(N, M, sparsity=S, num_stages=K, normalize_init=normalize,
                    rngs=nnx.Rngs(3))
  support = np.asarray(model.synthesis_weights[0])
  np.testing.assert_array_equal(np.count_nonzero(support, axis=0), S)
  values = np.unique(support[support != 0])
  assert len(values) == 1 and values[0] > 0
  if normalize:
    np.testing.assert_allclose(np.linalg.norm(support, 2), 1, rtol=1e-5)
  else:
    np.testing.assert_array_equal(values, [1])
  # W1 = W3_i = S^T, W2_i = S (eq. 5) for every stage.
  for i in range(K):
    np.testing.assert_array_equal(model.synthesis_weights[i], support)
    np.testing.assert_array_equal(model.analysis_weights[i], support.T)
  np.testing.assert_array_equal(model.input_weights[...], support.T)
  # Seeded: the same seed gives the same S, another seed another.
  again = ddse.DDSE(N, M, sparsity=S, num_stages=K, normalize_init=normalize,
                    rngs=nnx.Rngs(3))
  other = ddse.DDSE(N, M, sparsity=S, num_stages=K, normalize_init=normalize,
                    rngs=nnx.Rngs(4))
  np.testing.assert_array_equal(again.synthesis_weights[0], support)
  assert not np.array_equal(other.synthesis_weights[0], support)


@pytest.mark.parametrize('shortcuts', [True, False])
def test_features_match_eq_5_reference(shortcuts):
  model = perturb_and_project(small_ddse(shortcuts))
  x = random_signals(7, seed=5)
  np.testing.assert_allclose(model.features(x),
                             np_ddse_features(model, x, shortcuts),
                             rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('kind', ['ddse', 'lista_dropout'])
def test_all_stages_equal_the_composition_of_single_stages(kind):
  model = ddse.make_model(kind, N, M, sparsity=S, num_stages=K,
                          rngs=nnx.Rngs(0))
  if kind == 'ddse':
    model = perturb_and_project(model)
  model.eval()
  x = random_signals(7, seed=5)
  all_stages = model.features(x, return_all_stages=True)
  chex.assert_shape(all_stages, (K + 1, 7, M))
  # Stage i by itself: z_i = N_i(drive + recurrence_i(z_{i-1})).
  p = jax.tree.map(lambda a: np.asarray(a, np.float64),
                   nnx.to_pure_dict(nnx.state(
                       model, nnx.Any(nnx.Param, ddse.PCABuffer))))
  drive = (np.asarray(x, np.float64) - p['pca_mean']) @ (
      p['pca_components'] @ p['input_weights'].T)
  expected = np_soft_threshold(drive, p['threshold'][0])
  np.testing.assert_allclose(all_stages[0], expected, rtol=1e-4, atol=1e-5)
  for i in range(K):
    previous = np.asarray(all_stages[i], np.float64)
    if kind == 'ddse':
      recurrence = previous - previous @ (
          p['analysis_weights'][i] @ p['synthesis_weights'][i]).T
    else:
      recurrence = previous @ p['recurrent_weights'][i].T
    expected = np_soft_threshold(drive + recurrence, p['threshold'][i + 1])
    np.testing.assert_allclose(all_stages[i + 1], expected, rtol=1e-4,
                               atol=1e-5)
  np.testing.assert_array_equal(all_stages[-1], model.features(x))
  assert np.count_nonzero(all_stages[-1]) > 0


def test_stages_are_untied_and_decoupled():
  model = perturb_and_project(small_ddse())
  x, labels = random_signals(), jnp.arange(24) % CLASSES

  def loss(model):
    return optax.softmax_cross_entropy_with_integer_labels(model(x),
                                                           labels).mean()

  grads = nnx.grad(loss)(model)
  for name in ('synthesis_weights', 'analysis_weights'):
    per_stage = np.asarray(getattr(grads, name)[...])
    assert per_stage.shape[0] == K
    assert not np.allclose(per_stage[0], per_stage[1])
  # One SGD step from the tied initialization unties the stages and
  # decouples W1 from W3 (eq. 5 relaxed, Sec. 3.1).
  model = small_ddse()
  optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
  optimizer.update(model, nnx.grad(loss)(model))
  assert not np.array_equal(model.synthesis_weights[0],
                            model.synthesis_weights[1])
  assert not np.array_equal(model.analysis_weights[0],
                            model.analysis_weights[1])
  assert not np.array_equal(model.input_weights[...],
                            model.analysis_weights[0])


@pytest.mark.parametrize('shortcuts', [True, False])
def test_projected_training_keeps_rows_and_columns_s_sparse(shortcuts):
  model = small_ddse(shortcuts)
  constraints = model.sparsity_constraints()
  every_n_steps, num_steps = 4, 10
  optimizer = nnx.Optimizer(
      model, optax.chain(optax.sgd(0.05, momentum=0.9),
                         transforms.sparse_projection(constraints,
                                                      every_n_steps)),
      wrt=nnx.Param)
  x, labels = random_signals(), jnp.arange(24) % CLASSES

  @nnx.jit
  def train_step(model, optimizer):
    def loss(model):
      return optax.softmax_cross_entropy_with_integer_labels(
          model(x), labels).mean()
    value, grads = nnx.value_and_grad(loss)(model)
    optimizer.update(model, grads)
    return value

  def max_nonzeros():
    checks = transforms.check_sparsity(nnx.state(model, nnx.Param),
                                       constraints)
    assert sorted(checks) == ['analysis_weights', 'input_weights',
                              'synthesis_weights']
    return max(check.max_nonzeros for check in checks.values())

  losses = []
  for step in range(1, num_steps + 1):
    losses.append(float(train_step(model, optimizer)))
    if step % every_n_steps == 0:
      assert max_nonzeros() <= S
  assert losses[-1] < losses[0]
  # Step 10 is not a projection step: the reported model is projected once
  # more, as the experiment script does.
  assert max_nonzeros() > S
  nnx.update(model, transforms.project_params(nnx.state(model, nnx.Param),
                                              constraints))
  assert max_nonzeros() <= S


@pytest.mark.parametrize('kind', ['fc_dropout', 'fc_dropconnect',
                                  'lista_dropout'])
def test_dropout_and_dropconnect_act_in_training_only(kind):
  model = ddse.make_model(kind, N, M, sparsity=S, num_stages=K,
                          num_classes=CLASSES, rngs=nnx.Rngs(0))
  # Same seed, no regularization: the same weights.
  plain_kind = 'fc' if kind.startswith('fc') else kind
  plain = ddse.make_model(plain_kind, N, M, sparsity=S, num_stages=K,
                          num_classes=CLASSES, dropout_rate=0.0,
                          rngs=nnx.Rngs(0))
  x = random_signals()
  first, second = model(x), model(x)
  assert not np.allclose(first, second)
  chex.assert_tree_all_finite(first)
  model.eval()
  np.testing.assert_array_equal(model(x), model(x))
  np.testing.assert_allclose(model(x), plain(x), rtol=1e-6)
  model.train()
  assert not np.allclose(model(x), model(x))

  # The functional core: a jitted step of the split state draws new masks.
  @jax.jit
  def forward(state):
    model = nnx.merge(graphdef, state)
    return model(x), nnx.state(model)

  graphdef, state = nnx.split(model)
  out1, state = forward(state)
  out2, _ = forward(state)
  assert not np.allclose(out1, out2)


def test_dropconnect_masks_about_half_of_the_weights():
  model = ddse.FullyConnectedBaseline(N, M, num_stages=K, dropconnect_rate=0.5,
                                      activation=lambda u: u,
                                      rngs=nnx.Rngs(0))
  # With a linear neuron and one-hot inputs, the first layer's output is a
  # column of its masked, rescaled weights: each entry is 0 or 2 w.
  hidden_weights = model.hidden_weights[...]
  model.hidden_weights[...] = jnp.broadcast_to(jnp.eye(M), hidden_weights.shape)
  outputs = model.features(jnp.eye(N))
  weights = np.asarray(model.input_weights[...]).T
  dropped = np.isclose(outputs, 0, atol=1e-7)
  assert 0 < dropped.mean() < 1
  # The identity layers are masked too, so kept entries are w times 2^(k+1).
  np.testing.assert_allclose(outputs[~dropped], weights[~dropped] * 2**(K + 1),
                             rtol=1e-5)


def test_pca_buffer_is_fixed_state_not_a_param():
  x = random_signals()
  model = small_ddse()
  basis = dictionary.pca_basis(x)
  np.testing.assert_allclose(model.pca_mean[...], basis.mean, rtol=1e-6)
  np.testing.assert_allclose(model.pca_components[...], basis.components,
                             rtol=1e-6)
  assert isinstance(model.pca_components, ddse.PCABuffer)
  assert not isinstance(model.pca_components, nnx.Param)
  assert 'pca_components' not in nnx.state(model, nnx.Param)
  assert set(nnx.state(model, ddse.PCABuffer)) == {'pca_mean',
                                                   'pca_components'}
  optimizer = nnx.Optimizer(model, optax.sgd(1.0), wrt=nnx.Param)
  grads = nnx.grad(lambda model: jnp.sum(model(x)**2))(model)
  optimizer.update(model, grads)
  np.testing.assert_allclose(model.pca_components[...], basis.components,
                             rtol=1e-6)
  # Before set_pca the input projection is the identity.
  fresh = ddse.DDSE(N, M, sparsity=S, rngs=nnx.Rngs(0))
  np.testing.assert_array_equal(fresh._pca_project(x), x)


@pytest.mark.parametrize('build,message', [
    (lambda: ddse.DDSE(N, M, sparsity=0, rngs=nnx.Rngs(0)), 'sparsity'),
    (lambda: ddse.DDSE(N, M, sparsity=N + 1, rngs=nnx.Rngs(0)), 'sparsity'),
    (lambda: ddse.DDSE(N, M, sparsity=S, num_stages=0, rngs=nnx.Rngs(0)),
     'num_stages'),
    (lambda: ddse.DDSE(N, M, sparsity=S, threshold=0.0, rngs=nnx.Rngs(0)),
     'threshold'),
    (lambda: ddse.DDSE(N, 0, sparsity=S, rngs=nnx.Rngs(0)), 'code_dim'),
    (lambda: ddse.DDSE(N, M, sparsity=S, num_classes=0, rngs=nnx.Rngs(0)),
     'num_classes'),
    (lambda: ddse.FullyConnectedBaseline(N, M, dropout_rate=1.0,
                                         rngs=nnx.Rngs(0)), 'dropout_rate'),
    (lambda: ddse.FullyConnectedBaseline(N, M, dropconnect_rate=-0.1,
                                         rngs=nnx.Rngs(0)), 'dropconnect_rate'),
    (lambda: ddse.LISTABaseline(N, M, num_stages=0, rngs=nnx.Rngs(0)),
     'num_stages'),
    (lambda: ddse.make_model('mlp', N, M, sparsity=S, rngs=nnx.Rngs(0)),
     'kind'),
])
def test_bad_constructor_arguments_raise(build, message):
  with pytest.raises(ValueError, match=message):
    build()


@pytest.mark.parametrize('kind', ddse.MODEL_KINDS)
def test_wrong_input_dimension_raises(kind):
  model = ddse.make_model(kind, N, M, sparsity=S, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=f'shape \\(..., {N}\\)'):
    model(jnp.ones((3, N + 1)))


def test_bad_pca_inputs_raise():
  model = small_ddse()
  with pytest.raises(ValueError, match='basis must have'):
    model.set_pca(dictionary.pca_basis(jnp.ones((5, N + 1)) *
                                       jnp.arange(5.)[:, None]))
