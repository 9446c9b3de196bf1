"""Task heads and losses: classification and clustering on learned codes.

The l0 paper's "Task-Driven Optimization" concatenates an encoder with a task
loss and trains the whole network end to end. `TaskModel` is that network:
any encoder of `l0enc.models` (`LISTA`, `DeepL0Encoder`, `DeepMSparseEncoder`,
`MLPEncoder`) followed by a linear layer that gives one score per class or
cluster. It is one NNX module, so `model.eval()` / `model.train()` and
`models.set_helu_sigma(model, ...)` reach the encoder inside, and
`l0enc.train.fit` trains encoder and head together.

Losses are pure, jit-friendly functions `loss(outputs, targets) -> scalar`,
usable as `train.fit`'s `loss_fn` (hashable, so a setting compiles once):

* classification: `softmax_cross_entropy(logits, labels)` on integer labels;
* clustering (eq. 12): the softmax of the scores is the cluster confidence
  `p(j | a)`. The paper writes `p_j ∝ exp(-w_j^T a)`; the head computes
  `w'_j^T a + b_j` with `w'_j = -w_j`, so the linear layer absorbs the minus
  sign (and adds a bias, which eq. 12 does not have; a centroid
  initialization needs it, see `init_cluster_head`). The network is trained
  without labels by `InformationMaximizationLoss`, regularized information
  maximization (Krause, Perona and Gomes, NIPS 2010):

      L = mean_i H(p(. | a_i)) - gamma * H(mean_i p(. | a_i)),

  the conditional entropy of the assignments (small: every sample confidently
  in one cluster) minus `gamma` times the entropy of the cluster marginal of
  the batch (large: clusters used evenly). With gamma = 1 it is minus the
  mutual information between samples and clusters. Why this loss: the
  conditional entropy alone (or any loss that only asks for confident
  assignments) is minimized by putting every sample in one cluster with
  certainty; that collapsed solution has marginal entropy 0 and loss 0, while
  a confident balanced partition into K clusters has loss `-gamma log K`, so
  the marginal term makes collapse a bad solution rather than an attractor.
  "Regularized": the scores can be made arbitrarily confident by scaling the
  head, so the head carries a weight decay (`head_weight_decay`, in the
  optimizer, since the loss only sees the outputs).

`kmeans` (k-means++ seeding, then Lloyd's iterations, batched over restarts)
is the simple clustering reference on codes and the head's initialization.
"""

import dataclasses
import functools
from typing import Any, NamedTuple

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from l0enc import metrics
from l0enc import solvers
from l0enc import validation

HEAD_NAME = 'head'


def _code_dim(encoder: nnx.Module) -> int:
  if hasattr(encoder, 'code_dim'):
    return int(encoder.code_dim)
  if hasattr(encoder, 'output_layer'):  # models.MLPEncoder.
    return int(encoder.output_layer.out_features)
  raise ValueError(f'Cannot tell the code size of {type(encoder).__name__}; '
                   'pass code_dim.')


class TaskModel(nnx.Module):
  """An encoder followed by a linear head: `scores = head(encoder(x))`.

  With a softmax the scores are class probabilities (classification) or the
  cluster confidences of eq. 12 (clustering; the head's weights are the
  paper's `-w_j`, see the module docstring).

  Attributes:
    encoder: the encoder, inputs `(..., n)` to codes `(..., p)`.
    head: `nnx.Linear(p, num_outputs)`.
  """

  def __init__(self, encoder: nnx.Module, num_outputs: int, *,
               code_dim: int | None = None, use_bias: bool = True,
               kernel_init: nnx.Initializer = nnx.initializers.zeros_init(),
               param_dtype: Any = jnp.float32, rngs: nnx.Rngs | None = None):
    """Wraps `encoder` with a linear head.

    Args:
      encoder: an NNX encoder module (taken, not copied).
      num_outputs: K, the number of classes or clusters, at least 1.
      code_dim: p; read from the encoder when None.
      use_bias: whether the head has a bias (eq. 12 has none).
      kernel_init: initializer of the head's weights, `(p, K)`. Zeros by
        default: the head is linear in its weights, so zero weights are not a
        symmetric trap, and the untrained model predicts uniform
        probabilities.
      param_dtype: the head's parameter dtype.
      rngs: random streams for `kernel_init`; `nnx.Rngs(0)` when None.
    """
    code_dim = _code_dim(encoder) if code_dim is None else code_dim
    validation.check_int_in_range('code_dim', code_dim, 1, 2**31 - 1)
    num_outputs = validation.check_int_in_range('num_outputs', num_outputs, 1,
                                                2**31 - 1)
    self.encoder = encoder
    self.head = nnx.Linear(code_dim, num_outputs, use_bias=use_bias,
                           kernel_init=kernel_init, param_dtype=param_dtype,
                           rngs=nnx.Rngs(0) if rngs is None else rngs)

  def encode(self, x: jax.Array) -> jax.Array:
    """The codes `(..., p)` of signals `(..., n)`."""
    return self.encoder(x)

  def __call__(self, x: jax.Array) -> jax.Array:
    """The scores (logits) `(..., K)` of signals `(..., n)`."""
    return self.head(self.encoder(x))


class Encoded(nnx.Module):
  """Adapter: a `TaskModel`'s encoder alone, for `train.predict(...)`."""

  def __init__(self, model: TaskModel):
    self.model = model

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.model.encode(x)


# ----------------------------------------------------------------- losses


def _check_logits(logits: jax.Array) -> jax.Array:
  logits = jnp.asarray(logits)
  if logits.ndim < 1:
    raise ValueError(f'logits must have shape (..., K), got {logits.shape}.')
  return logits


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross entropy `-log softmax(logits)[label]` over samples.

  Args:
    logits: scores, shape `(..., K)`.
    labels: integer labels in `[0, K)`, shape `(...)`; floats must be
      integer-valued.

  Returns:
    A scalar. Concrete labels outside `[0, K)` or not integer-valued raise a
    `ValueError`; traced ones (under `jit`, e.g. in `train.fit`) make the
    loss NaN, which stops `fit`, and fail under `checkify`.
  """
  logits = _check_logits(logits)
  labels = jnp.asarray(labels)
  if labels.shape != logits.shape[:-1]:
    raise ValueError(f'labels must have shape {logits.shape[:-1]} to match '
                     f'logits {logits.shape}, got {labels.shape}.')
  if not (jnp.issubdtype(labels.dtype, jnp.integer) or
          jnp.issubdtype(labels.dtype, jnp.floating)):
    raise ValueError(f'labels must be integers, got dtype {labels.dtype}.')
  num_classes = logits.shape[-1]
  valid = (labels >= 0) & (labels < num_classes)
  if jnp.issubdtype(labels.dtype, jnp.floating):
    valid &= labels == jnp.round(labels)
  if validation.is_concrete(labels):
    with jax.ensure_compile_time_eval():
      bad = int(jnp.flatnonzero(~valid.ravel(), size=1, fill_value=-1)[0])
      if bad >= 0:
        value = labels.ravel()[bad].item()
    if bad >= 0:
      raise ValueError(
          f'labels must be integers in [0, {num_classes}) (K = '
          f'{num_classes} logits), got {value!r} at flat index {bad}.')
  loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
      logits, labels.astype(jnp.int32)))
  if validation.is_concrete(labels):
    return loss
  return validation.nan_unless(
      jnp.all(valid), loss,
      f'labels must be integers in [0, {num_classes}).')


def cluster_probabilities(logits: jax.Array) -> jax.Array:
  """The cluster confidences `p(j | a)` of eq. 12: the softmax of the scores.

  The paper's `exp(-w_j^T a) / sum_l exp(-w_l^T a)` is `softmax(logits)` with
  `logits_j = -w_j^T a`: the head's weights are the paper's `-w_j`.
  """
  return jax.nn.softmax(_check_logits(logits), axis=-1)


def _flatten_samples(logits: jax.Array) -> jax.Array:
  logits = _check_logits(logits)
  return logits.reshape(-1, logits.shape[-1])


def conditional_entropy(logits: jax.Array) -> jax.Array:
  """`mean_i H(p(. | a_i))`, in nats: how unsure each assignment is.

  Args:
    logits: scores, shape `(..., K)`; every leading index is a sample.

  Returns:
    A scalar in `[0, log K]`.
  """
  log_p = jax.nn.log_softmax(_flatten_samples(logits), axis=-1)
  return -jnp.mean(jnp.sum(jnp.exp(log_p) * log_p, axis=-1))


def marginal_entropy(logits: jax.Array) -> jax.Array:
  """`H(mean_i p(. | a_i))`, in nats: how evenly the clusters are used.

  Args:
    logits: scores, shape `(..., K)`; every leading index is a sample.

  Returns:
    A scalar in `[0, log K]`; 0 when all samples sit in one cluster.
  """
  log_p = jax.nn.log_softmax(_flatten_samples(logits), axis=-1)
  # log of the mean probability, stably: logsumexp over samples - log N.
  log_marginal = (jax.scipy.special.logsumexp(log_p, axis=0)
                  - jnp.log(log_p.shape[0]))
  return -jnp.sum(jnp.exp(log_marginal) * log_marginal)


def information_maximization_loss(logits: jax.Array, targets: Any = None, *,
                                  marginal_weight: float = 1.0) -> jax.Array:
  """Regularized information maximization (see the module docstring).

  `mean_i H(p(. | a_i)) - marginal_weight * H(mean_i p(. | a_i))`, with the
  marginal taken over the samples given (a minibatch in training: it should
  hold several times more samples than there are clusters).

  Args:
    logits: scores, shape `(..., K)`.
    targets: ignored (labels are never used); present so that the function
      fits `train.fit`'s `loss_fn(outputs, targets)`.
    marginal_weight: gamma >= 0, the weight of the marginal entropy; 1 gives
      minus the mutual information between samples and clusters.

  Returns:
    A scalar in `[-gamma log K, log K]`.
  """
  del targets
  validation.check_nonnegative('marginal_weight', marginal_weight)
  return (conditional_entropy(logits)
          - marginal_weight * marginal_entropy(logits))


@dataclasses.dataclass(frozen=True)
class InformationMaximizationLoss:
  """`information_maximization_loss` with a fixed weight, as a `loss_fn`.

  A frozen dataclass hashes by value, so every `fit` with the same weight
  reuses the compiled training step.

  Attributes:
    marginal_weight: gamma >= 0 (see `information_maximization_loss`).
  """
  marginal_weight: float = 1.0

  def __post_init__(self):
    validation.check_nonnegative('marginal_weight', self.marginal_weight)

  def __call__(self, logits: jax.Array, targets: Any = None) -> jax.Array:
    return information_maximization_loss(
        logits, targets, marginal_weight=self.marginal_weight)


# ------------------------------------------------------- metrics, optimizer


def classification_metrics(logits: Any, labels: Any) -> dict[str, float]:
  """`{'error': %}` of the argmax predictions: a `train.fit` metric_fn."""
  return {'error': float(metrics.classification_error(logits, labels))}


def clustering_metrics(logits: Any, labels: Any) -> dict[str, float]:
  """Clustering error (Hungarian, %), NMI and the number of clusters used.

  A `train.fit` metric_fn. The labels only score the clustering; they never
  enter a loss.
  """
  assignments = np.argmax(np.asarray(logits), axis=-1)
  labels = np.asarray(labels)
  return {'error': metrics.clustering_error(assignments, labels),
          'nmi': metrics.normalized_mutual_information(assignments, labels),
          'clusters_used': float(len(np.unique(assignments)))}


def confusion_matrix(predictions: Any, labels: Any,
                     num_classes: int) -> np.ndarray:
  """Counts `[true class, predicted class]`, shape `(K, K)`, int64."""
  counts = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(counts, (np.asarray(labels), np.asarray(predictions)), 1)
  return counts


def _path_names(path: tuple[Any, ...]) -> list[Any]:
  return [getattr(key, 'key', getattr(key, 'name', key)) for key in path]


def _is_head_kernel(path: tuple[Any, ...]) -> bool:
  names = _path_names(path)
  return HEAD_NAME in names and 'kernel' in names


def head_weight_decay(rate: float) -> optax.GradientTransformation:
  """Adds `rate * w` to the gradient of the head's weights (not its bias).

  The "regularized" of regularized information maximization, for a
  `TaskModel` whose parameters the optimizer sees as an `nnx.State`. Chain
  it before the optimizer: `optax.chain(head_weight_decay(1e-4),
  optax.adam(1e-3))` (for Adam this is L2 regularization, not AdamW).

  Args:
    rate: the L2 weight, non-negative.

  Returns:
    An optax transformation.
  """
  validation.check_nonnegative('rate', rate)

  def mask(params):
    return jax.tree_util.tree_map_with_path(
        lambda path, _: _is_head_kernel(path), params)

  return optax.add_decayed_weights(rate, mask=mask)


# ----------------------------------------------------------------- k-means


class KMeansResult(NamedTuple):
  """Result of `kmeans`.

  Attributes:
    centroids: shape `(K, d)`.
    assignments: the nearest centroid of each sample, shape `(N,)`, int32.
    inertia: `sum_i min_j ||x_i - c_j||^2` of the best restart.
  """
  centroids: jax.Array
  assignments: jax.Array
  inertia: jax.Array


def _squared_distances(x, centroids):
  return (jnp.sum(x**2, axis=-1, keepdims=True)
          - 2 * solvers.matmul(x, centroids.T)
          + jnp.sum(centroids**2, axis=-1))


def _kmeans_plus_plus(key, x, num_clusters):
  """k-means++ seeding (Arthur and Vassilvitskii 2007): D^2 sampling."""
  first_key, key = jax.random.split(key)
  first = x[jax.random.randint(first_key, (), 0, x.shape[0])]
  centroids = jnp.zeros((num_clusters, x.shape[1]), x.dtype).at[0].set(first)
  nearest = jnp.sum((x - first)**2, axis=-1)

  def add(j, carry):
    centroids, nearest = carry
    weights = jnp.maximum(nearest, 0)
    # All samples coincide with chosen centroids: fall back to uniform.
    weights = jnp.where(jnp.sum(weights) > 0, weights, jnp.ones_like(weights))
    index = jax.random.choice(jax.random.fold_in(key, j), x.shape[0],
                              p=weights / jnp.sum(weights))
    centroids = centroids.at[j].set(x[index])
    nearest = jnp.minimum(nearest, jnp.sum((x - x[index])**2, axis=-1))
    return centroids, nearest

  centroids, _ = jax.lax.fori_loop(1, num_clusters, add, (centroids, nearest))
  return centroids


def _lloyd(x, centroids, num_iterations):
  """Lloyd's iterations; an emptied cluster keeps its previous centroid."""

  def step(centroids, _):
    assignments = jnp.argmin(_squared_distances(x, centroids), axis=-1)
    one_hot = jax.nn.one_hot(assignments, centroids.shape[0], dtype=x.dtype)
    counts = jnp.sum(one_hot, axis=0)
    sums = solvers.matmul(one_hot.T, x)
    centroids = jnp.where(counts[:, None] > 0,
                          sums / jnp.maximum(counts, 1)[:, None], centroids)
    return centroids, None

  centroids, _ = jax.lax.scan(step, centroids, None, length=num_iterations)
  distances = _squared_distances(x, centroids)
  assignments = jnp.argmin(distances, axis=-1).astype(jnp.int32)
  inertia = jnp.sum(jnp.maximum(jnp.min(distances, axis=-1), 0))
  return KMeansResult(centroids, assignments, inertia)


@functools.partial(jax.jit, static_argnames=('num_clusters', 'num_iterations',
                                             'num_restarts'))
def _kmeans(key, x, num_clusters, num_iterations, num_restarts):

  def one(key):
    return _lloyd(x, _kmeans_plus_plus(key, x, num_clusters), num_iterations)

  # Restarts one after another: memory stays O(N K), as for one run.
  results = jax.lax.map(one, jax.random.split(key, num_restarts))
  best = jnp.argmin(results.inertia)
  return jax.tree.map(lambda leaf: leaf[best], results)


def kmeans(key: jax.Array, x: Any, num_clusters: int, *,
           num_iterations: int = 100, num_restarts: int = 10) -> KMeansResult:
  """k-means: k-means++ seeding, then Lloyd's iterations; best of restarts.

  Args:
    key: PRNG key of the seeding.
    x: samples, shape `(N, d)`, N >= num_clusters.
    num_clusters: K >= 1.
    num_iterations: Lloyd iterations per restart (a fixed count, `lax.scan`).
    num_restarts: independent seedings; the lowest inertia wins.

  Returns:
    `KMeansResult(centroids, assignments, inertia)`.
  """
  x = jnp.asarray(x)
  if x.ndim != 2:
    raise ValueError(f'x must have shape (N, d), got {x.shape}.')
  validation.check_finite('x', x)
  num_clusters = validation.check_int_in_range(
      f'num_clusters (at most the {x.shape[0]} samples)', num_clusters, 1,
      x.shape[0])
  num_iterations = validation.check_int_in_range('num_iterations',
                                                 num_iterations, 1, 2**31 - 1)
  num_restarts = validation.check_int_in_range('num_restarts', num_restarts,
                                               1, 2**31 - 1)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    x = x.astype(jnp.float32)
  return _kmeans(key, x, num_clusters, num_iterations, num_restarts)


def init_cluster_head(model: TaskModel, centroids: Any,
                      temperature: float) -> TaskModel:
  """Sets the head so that its softmax is a soft nearest-centroid rule.

  `logits_j = (2 c_j^T a - ||c_j||^2) / T`, which equals
  `-||a - c_j||^2 / T` up to a term common to all j, so `softmax(logits)`
  is `p(j | a) ∝ exp(-||a - c_j||^2 / T)` and its argmax is the nearest
  centroid: training starts from the k-means clustering of the codes.

  Args:
    model: a `TaskModel` with a biased head of K outputs.
    centroids: shape `(K, p)`, e.g. `kmeans(...)` on the initial codes.
    temperature: T > 0; e.g. the mean squared distance to the nearest
      centroid, so that a cluster one typical distance farther is e^-1 as
      likely.

  Returns:
    `model`, updated in place.
  """
  centroids = jnp.asarray(centroids)
  kernel = model.head.kernel[...]
  if centroids.shape != kernel.shape[::-1]:
    raise ValueError(f'centroids must have shape {kernel.shape[::-1]}, got '
                     f'{centroids.shape}.')
  if model.head.bias is None:
    raise ValueError('init_cluster_head needs a head with a bias.')
  validation.check_positive('temperature', temperature)
  model.head.kernel[...] = (2 * centroids.T / temperature).astype(kernel.dtype)
  model.head.bias[...] = (-jnp.sum(centroids**2, axis=-1) / temperature
                          ).astype(kernel.dtype)
  return model
