"""Tests of l0enc.tasks: task heads, losses, k-means, head initialization."""

from flax import nnx
import jax
from jax import test_util as jtu
from jax.experimental import checkify
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from l0enc import metrics
from l0enc import models
from l0enc import tasks
from l0enc import tdsc
from l0enc import train

SIGNAL_DIM, CODE_DIM, NUM_CLASSES = 6, 10, 3


def _dictionary(seed=0):
  atoms = np.random.default_rng(seed).normal(size=(SIGNAL_DIM, CODE_DIM))
  return jnp.asarray(atoms / np.linalg.norm(atoms, axis=0), jnp.float32)


def _encoder(kind):
  if kind == 'lista':
    return models.LISTA.from_dictionary(_dictionary(), lam=0.1)
  if kind == 'l0':
    return models.DeepL0Encoder.from_dictionary(_dictionary(), lam=0.01)
  if kind == 'msparse':
    return models.DeepMSparseEncoder.from_dictionary(_dictionary(), m=3)
  return models.MLPEncoder(SIGNAL_DIM, CODE_DIM, rngs=nnx.Rngs(0))


def _mixture(seed, num_samples, centers, noise):
  rng = np.random.default_rng(seed)
  labels = rng.permutation(np.arange(num_samples) % len(centers))
  x = centers[labels] + noise * rng.normal(size=(num_samples,
                                                 centers.shape[1]))
  return x.astype(np.float32), labels


@pytest.mark.parametrize('kind', ['lista', 'l0', 'msparse', 'mlp'])
def test_task_model_shapes_and_modes(kind):
  model = tasks.TaskModel(_encoder(kind), NUM_CLASSES,
                          kernel_init=nnx.initializers.normal(1.0))
  x = jax.random.normal(jax.random.key(0), (2, 5, SIGNAL_DIM))
  model.eval()  # No dropout: two calls see the same encoder.
  assert model(x).shape == (2, 5, NUM_CLASSES)
  assert model.encode(x).shape == (2, 5, CODE_DIM)
  np.testing.assert_allclose(
      model(x), model.encode(x) @ model.head.kernel[...] + model.head.bias[...],
      rtol=1e-5, atol=1e-5)
  # Training / evaluation mode and HELU_sigma reach the encoder inside.
  if hasattr(model.encoder, 'deterministic'):
    assert model.encoder.deterministic
  model.train()
  if hasattr(model.encoder, 'deterministic'):
    assert not model.encoder.deterministic
  assert models.set_helu_sigma(model, 0.05) == (1 if kind == 'l0' else 0)
  # train.predict runs the model (and the encoder alone) in evaluation mode.
  assert train.predict(model, x[0]).shape == (5, NUM_CLASSES)
  assert train.predict(tasks.Encoded(model), x[0]).shape == (5, CODE_DIM)


def test_untrained_head_predicts_uniformly():
  model = tasks.TaskModel(_encoder('l0'), NUM_CLASSES)
  logits = model(jnp.ones((4, SIGNAL_DIM)))
  np.testing.assert_allclose(tasks.cluster_probabilities(logits),
                             1 / NUM_CLASSES)


def test_task_model_rejects_bad_sizes():
  with pytest.raises(ValueError, match='num_outputs'):
    tasks.TaskModel(_encoder('lista'), 0)


def _reference_cross_entropy(logits, labels):
  logits = np.asarray(logits, np.float64)
  log_p = logits - np.log(np.sum(np.exp(logits - logits.max(-1,
                                                             keepdims=True)),
                                 axis=-1, keepdims=True)) - logits.max(
                                     -1, keepdims=True)
  return -np.mean(np.take_along_axis(log_p, labels[:, None], axis=-1))


def test_softmax_cross_entropy_value_and_gradient():
  with jax.enable_x64(True):
    logits = jax.random.normal(jax.random.key(1), (7, 4), jnp.float64) * 3
    labels = np.array([0, 1, 2, 3, 0, 1, 2])
    np.testing.assert_allclose(tasks.softmax_cross_entropy(logits, labels),
                               _reference_cross_entropy(logits, labels),
                               rtol=1e-12)
    gradient = jax.grad(tasks.softmax_cross_entropy)(logits, labels)
    expected = (jax.nn.softmax(logits) - jax.nn.one_hot(labels, 4)) / 7
    np.testing.assert_allclose(gradient, expected, rtol=1e-10, atol=1e-12)
    jtu.check_grads(lambda z: tasks.softmax_cross_entropy(z, labels),
                    (logits,), order=1, modes=['rev'])
  with pytest.raises(ValueError, match='labels must have shape'):
    tasks.softmax_cross_entropy(jnp.zeros((3, 4)), jnp.zeros((4,), int))


@pytest.mark.parametrize('labels, shown', [
    (np.array([0, 4, 1]), '4'), (np.array([0, -1, 1]), '-1'),
    (np.array([0.0, 1.5, 2.0]), '1.5'), (np.array([0.0, np.nan, 2.0]), 'nan')])
def test_softmax_cross_entropy_rejects_labels_outside_the_classes(labels,
                                                                  shown):
  logits = jnp.zeros((3, 4))
  with pytest.raises(ValueError,
                     match=rf'labels must be integers in \[0, 4\).*{shown}'):
    tasks.softmax_cross_entropy(logits, labels)
  # Traced (as in train.fit's step): a NaN loss, which stops fit, and a
  # checkify error naming the labels.
  loss = jax.jit(tasks.softmax_cross_entropy)
  assert np.isnan(loss(logits, labels))
  assert np.isfinite(loss(logits, np.array([0, 3, 1], labels.dtype)))
  error, _ = checkify.checkify(loss, errors=checkify.user_checks)(logits,
                                                                 labels)
  assert 'labels must be integers in [0, 4)' in error.get()


def test_softmax_cross_entropy_accepts_integer_valued_float_labels():
  logits = jax.random.normal(jax.random.key(0), (3, 4))
  np.testing.assert_allclose(
      tasks.softmax_cross_entropy(logits, np.array([0.0, 3.0, 1.0])),
      _reference_cross_entropy(np.asarray(logits), np.array([0, 3, 1])),
      rtol=1e-6)


def _reference_information_maximization(logits, weight):
  """Straight from the definition, in NumPy float64."""
  logits = np.asarray(logits, np.float64).reshape(-1, logits.shape[-1])
  p = np.exp(logits - logits.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  conditional = -np.mean(np.sum(p * np.log(p), axis=-1))
  marginal = p.mean(0)
  return conditional - weight * -np.sum(marginal * np.log(marginal))


@pytest.mark.parametrize('weight', [0.0, 1.0, 2.5])
def test_information_maximization_value_and_gradient(weight):
  loss = tasks.InformationMaximizationLoss(weight)
  with jax.enable_x64(True):
    logits = jax.random.normal(jax.random.key(2), (3, 8, 5), jnp.float64) * 2
    np.testing.assert_allclose(
        loss(logits, None), _reference_information_maximization(logits,
                                                                weight),
        rtol=1e-10)
    # Gradients against central finite differences (float64).
    jtu.check_grads(lambda z: loss(z, None), (logits,), order=1,
                    modes=['rev'])


def test_information_maximization_prefers_balanced_to_collapsed():
  num_samples, num_clusters = 60, 4
  confident = 30.0
  collapsed = jnp.zeros((num_samples, num_clusters)).at[:, 0].set(confident)
  balanced = confident * jax.nn.one_hot(
      jnp.arange(num_samples) % num_clusters, num_clusters)
  loss = tasks.InformationMaximizationLoss(1.0)
  # Collapse: certain, but the marginal has no entropy: loss ~ 0.
  np.testing.assert_allclose(loss(collapsed), 0.0, atol=1e-6)
  # A certain, balanced partition reaches the minimum -log K.
  np.testing.assert_allclose(loss(balanced), -np.log(num_clusters), atol=1e-6)
  np.testing.assert_allclose(tasks.marginal_entropy(balanced),
                             np.log(num_clusters), rtol=1e-6)
  np.testing.assert_allclose(tasks.conditional_entropy(collapsed), 0.0,
                             atol=1e-6)
  # Without the marginal term both are minima: that is the collapse.
  assert tasks.conditional_entropy(collapsed) <= 1e-6
  with pytest.raises(ValueError, match='marginal_weight'):
    tasks.InformationMaximizationLoss(-1.0)


def test_clustering_loss_trains_without_collapse():
  # Four well-separated blobs; a LISTA encoder with a randomly initialized
  # head, trained on the information maximization loss without labels.
  centers = 4.0 * np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], np.float32)
  x, labels = _mixture(0, 512, centers, noise=0.5)
  encoder = models.LISTA(2, 8, threshold=0.01, rngs=nnx.Rngs(1))
  model = tasks.TaskModel(encoder, 4,
                          kernel_init=nnx.initializers.normal(0.1),
                          rngs=nnx.Rngs(2))
  train.fit(model, x, np.zeros(len(x), np.int32), key=jax.random.key(3),
            config=train.TrainConfig(num_epochs=30, batch_size=128),
            tx=optax.chain(tasks.head_weight_decay(1e-4), optax.adam(0.03)),
            loss_fn=tasks.InformationMaximizationLoss(1.0), progress=False)
  scores = tasks.clustering_metrics(train.predict(model, x), labels)
  assert scores['clusters_used'] == 4
  assert scores['error'] < 3.0
  assert scores['nmi'] > 0.9


def test_head_weight_decay_touches_only_the_head_kernel():
  model = tasks.TaskModel(_encoder('l0'), NUM_CLASSES)
  model.head.kernel[...] = jnp.ones_like(model.head.kernel[...])
  model.head.bias[...] = jnp.ones_like(model.head.bias[...])
  encoder_before = nnx.state(model.encoder, nnx.Param)
  optimizer = nnx.Optimizer(
      model, optax.chain(tasks.head_weight_decay(0.25), optax.sgd(1.0)),
      wrt=nnx.Param)
  optimizer.update(model, jax.tree.map(jnp.zeros_like,
                                       nnx.state(model, nnx.Param)))
  np.testing.assert_allclose(model.head.kernel[...], 0.75)
  np.testing.assert_allclose(model.head.bias[...], 1.0)
  jax.tree.map(np.testing.assert_array_equal, encoder_before,
               nnx.state(model.encoder, nnx.Param))


def test_kmeans_separates_a_toy_mixture():
  centers = np.array([[5, 0, 0], [0, 5, 0], [0, 0, 5], [5, 5, 5]],
                     np.float32)
  x, labels = _mixture(1, 400, centers, noise=0.3)
  result = tasks.kmeans(jax.random.key(0), x, 4, num_iterations=20,
                        num_restarts=3)
  assert result.centroids.shape == (4, 3)
  assert metrics.clustering_error(np.asarray(result.assignments), labels) == 0
  # Lloyd's fixed point: every centroid is the mean of its members, and the
  # inertia is at most that of the true partition.
  for j in range(4):
    members = x[np.asarray(result.assignments) == j]
    np.testing.assert_allclose(result.centroids[j], members.mean(0),
                               rtol=1e-4, atol=1e-4)
  true_inertia = sum(np.sum((x[labels == j] - x[labels == j].mean(0))**2)
                     for j in range(4))
  assert float(result.inertia) <= true_inertia * (1 + 1e-4)


def test_kmeans_rejects_bad_arguments():
  with pytest.raises(ValueError, match='num_clusters'):
    tasks.kmeans(jax.random.key(0), np.zeros((3, 2)), 4)
  with pytest.raises(ValueError, match=r'shape \(N, d\)'):
    tasks.kmeans(jax.random.key(0), np.zeros(3), 1)
  with pytest.raises(ValueError, match='NaN'):
    tasks.kmeans(jax.random.key(0), np.full((3, 2), np.nan), 1)


def test_cluster_head_is_a_soft_nearest_centroid_rule():
  model = tasks.TaskModel(_encoder('msparse'), 4)
  centroids = jax.random.normal(jax.random.key(4), (4, CODE_DIM))
  temperature = 2.0
  tasks.init_cluster_head(model, centroids, temperature)
  x = jax.random.normal(jax.random.key(5), (16, SIGNAL_DIM))
  codes = model.encode(x)
  distances = jnp.sum((codes[:, None] - centroids[None])**2, axis=-1)
  np.testing.assert_allclose(tasks.cluster_probabilities(model(x)),
                             jax.nn.softmax(-distances / temperature),
                             rtol=1e-4, atol=1e-6)
  with pytest.raises(ValueError, match='centroids must have shape'):
    tasks.init_cluster_head(model, centroids[:3], temperature)
  with pytest.raises(ValueError, match='bias'):
    tasks.init_cluster_head(tasks.TaskModel(_encoder('l0'), 4,
                                            use_bias=False),
                            centroids, temperature)


def test_metrics_and_confusion_matrix():
  logits = np.array([[3., 0.], [0., 2.], [1., 0.], [0., 1.]])
  labels = np.array([0, 1, 1, 1])
  assert tasks.classification_metrics(logits, labels) == {'error': 25.0}
  np.testing.assert_array_equal(
      tasks.confusion_matrix(np.argmax(logits, -1), labels, 2),
      [[1, 0], [1, 2]])
  scores = tasks.clustering_metrics(logits[:, ::-1], labels)
  assert scores['error'] == 25.0 and scores['clusters_used'] == 2


# ------------------------------------------------------------------- TDSC


def _elastic_net_problem(seed=0, num_signals=4):
  rng = np.random.default_rng(seed)
  dictionary = rng.normal(size=(SIGNAL_DIM, CODE_DIM))
  dictionary /= np.linalg.norm(dictionary, axis=0)
  x = rng.normal(size=(num_signals, SIGNAL_DIM))
  return jnp.asarray(x), jnp.asarray(dictionary)


def test_elastic_net_codes_satisfy_the_optimality_conditions():
  lam1, lam2 = 0.2, 0.1
  with jax.enable_x64(True):
    x, dictionary = _elastic_net_problem()
    codes = tdsc.elastic_net_codes(x, dictionary, lam1, lam2,
                                   num_iterations=500)
    # Subgradient conditions: D^T (x - D a) - lam2 a = lam1 sign(a) on the
    # support, and |.| <= lam1 off it.
    correlation = (x - codes @ dictionary.T) @ dictionary - lam2 * codes
    active = np.asarray(codes) != 0
    assert active.any() and not active.all()
    np.testing.assert_allclose(correlation[active],
                               lam1 * np.sign(codes[active]), atol=1e-10)
    assert np.all(np.abs(correlation[~active]) <= lam1 + 1e-10)
    # Leading batch axes.
    batched = tdsc.elastic_net_codes(x.reshape(2, 2, SIGNAL_DIM), dictionary,
                                     lam1, lam2, num_iterations=500)
    np.testing.assert_allclose(batched.reshape(codes.shape), codes,
                               atol=1e-12)


def test_elastic_net_gradient_matches_finite_differences():
  lam1, lam2 = 0.2, 0.1
  with jax.enable_x64(True):
    x, dictionary = _elastic_net_problem(seed=1)
    solve = lambda x, dictionary: tdsc.elastic_net_codes(
        x, dictionary, lam1, lam2, num_iterations=500)
    # Implicit differentiation on the active set against central finite
    # differences of the converged solution, in x and in D.
    jtu.check_grads(solve, (x, dictionary), order=1, modes=['rev'],
                    eps=1e-6)
    # ... and against backpropagation through the converged iterations.
    cotangent = jax.random.normal(jax.random.key(0), (4, CODE_DIM),
                                  jnp.float64)
    implicit = jax.vjp(solve, x, dictionary)[1](cotangent)
    unrolled = jax.vjp(lambda x, d: tdsc._solve(x, d, lam1, lam2, 500),
                       x, dictionary)[1](cotangent)
    for ours, reference in zip(implicit, unrolled):
      np.testing.assert_allclose(ours, reference, atol=1e-9)


def test_tdsc_model_trains_its_dictionary():
  x, dictionary = _elastic_net_problem(seed=2, num_signals=64)
  encoder = tdsc.ElasticNetEncoder(np.asarray(dictionary, np.float32) * 2,
                                   lam1=0.1, lam2=0.1, num_iterations=50)
  # The atoms in use lie in the unit ball.
  np.testing.assert_allclose(jnp.linalg.norm(encoder.atoms(), axis=0), 1.0,
                             rtol=1e-5)
  model = tasks.TaskModel(encoder, NUM_CLASSES)
  labels = np.arange(64) % NUM_CLASSES
  before = np.asarray(encoder.dictionary[...])
  result = train.fit(model, np.asarray(x, np.float32), labels,
                     key=jax.random.key(0),
                     config=train.TrainConfig(num_epochs=2, batch_size=32),
                     tx=optax.adam(1e-2), loss_fn=tasks.softmax_cross_entropy,
                     progress=False)
  assert np.all(np.isfinite([r.train_loss for r in result.history]))
  assert not np.allclose(encoder.dictionary[...], before)
  with pytest.raises(ValueError, match='lam2'):
    tdsc.ElasticNetEncoder(dictionary, lam1=0.1, lam2=0.0)
