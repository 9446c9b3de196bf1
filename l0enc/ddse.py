"""The Deep Double Sparsity Encoder (DDSE) and its baselines I-V (Flax NNX).

Equation numbers refer to Wang et al., "Deep Double Sparsity Encoder"
(../shared/papers/deep-double-sparsity-encoder.txt). DDSE unrolls ISTA (eq. 2)
for a dictionary with the double sparsity structure `D = D_0 S` (eq. 3):

    x_pca   = D_0^T (x - mean)                        PCA, fixed (eq. 5)
    z_0     = N_0(W1 x_pca)
    z_i     = N_i(W1 x_pca + z_{i-1} - W3_i W2_i z_{i-1}),   i = 1..k  (eq. 5)

N_i is the soft threshold with learned per-unit thresholds. The network has
"1 W1 layer, k W2 layers, and k W3 layers" (Sec. 3.3.3): the first layer
starts ISTA from z = 0, where the recurrent term vanishes, and each of the k
stages after it has its own (untied) W2_i and W3_i. It is a (k+1)-layer
network, the LISTA convention, with (2k+1) s m weights (Sec. 3.3.1); note
that this `num_stages = k` counts recurrent stages, whereas
`l0enc.models.LISTA(num_stages=K)` counts neuron layers (K = k + 1). W1 and W3
are row-wise s-sparse and W2 column-wise s-sparse (eq. 6), enforced by
`l0enc.transforms.sparse_projection` (eq. 8).

The baselines of Sec. 4.2 share the input (mean removal and the same PCA
basis, so every model sees identical data), the code dimension m, the
(k+1)-layer structure and the optional linear softmax head:

  I    `FullyConnectedBaseline`: first layer m x n, then k layers m x m.
  II   I with dropout (rate 0.5) on the output of each of the k+1 layers.
  III  I with dropconnect (rate 0.5) on the weights of each of the k+1 layers.
  IV   `LISTABaseline`: untied LISTA, `z_i = N_i(W x_pca + S_i z_{i-1})`,
       with dropout (rate 0.5) on the output of each layer.
  V    `DDSE(shortcuts=False)`: `z_i = N_i(W1 x_pca - W3_i W2_i z_{i-1})`,
       everything else, sparsity constraints included, unchanged.

`make_model(kind, ...)` builds any of the six with the paper's settings.
`l0enc.ddse_sparse` counts a DDSE's weights against the paper's formulas and
exports them as sparse matrices (Sec. 3.3).

Parameter paths (keys of `nnx.state(model, nnx.Param)`):

  DDSE and V: 'input_weights' W1 `(m, n)`, 'synthesis_weights' W2 `(k, n, m)`,
    'analysis_weights' W3 `(k, m, n)`, 'threshold' `(k + 1, m)`.
  I-III: 'input_weights' `(m, n)`, 'input_bias' `(m,)`, 'hidden_weights'
    `(k, m, m)`, 'hidden_bias' `(k, m)`.
  IV: 'input_weights' W `(m, n)`, 'recurrent_weights' S `(k, m, m)`,
    'threshold' `(k + 1, m)`.
  All, with a head: 'head/kernel' `(m, num_classes)`, 'head/bias'.

Weights are stored as `(fan_out, fan_in)`, the paper's orientation, with the
stage as leading axis. W2 maps a code to the PCA domain (it is the synthesis
dictionary S of eq. 5) and W3 maps it back (the analysis S^T). The PCA mean
and basis are 'pca_mean' `(n,)` and 'pca_components' `(n, n)`, of type
`PCABuffer`: model state, not `nnx.Param`, so no optimizer touches them.

Modes: the models are built in training mode; `model.eval()` turns dropout
and dropconnect off (Flax's `deterministic` attribute), `model.train()` back
on. Their masks come from the `dropout` stream of the `rngs` given at
construction (the `default` stream if there is none), held by the model: a
jitted step that returns the split state draws fresh masks every call.
"""

from collections.abc import Callable
from typing import Any

from flax import nnx
import jax
import jax.numpy as jnp

from l0enc import dictionary
from l0enc import ops
from l0enc import transforms
from l0enc import validation

FULLY_CONNECTED = 'fc'
FULLY_CONNECTED_DROPOUT = 'fc_dropout'
FULLY_CONNECTED_DROPCONNECT = 'fc_dropconnect'
LISTA_DROPOUT = 'lista_dropout'
DDSE_NO_SHORTCUTS = 'ddse_no_shortcuts'
DDSE_MODEL = 'ddse'
# Baselines I-V of Sec. 4.2, then DDSE.
MODEL_KINDS = (FULLY_CONNECTED, FULLY_CONNECTED_DROPOUT,
               FULLY_CONNECTED_DROPCONNECT, LISTA_DROPOUT, DDSE_NO_SHORTCUTS,
               DDSE_MODEL)
PAPER_DROPOUT_RATE = 0.5
_MAX_SIZE = 2**31 - 1


class PCABuffer(nnx.Variable):
  """The fixed PCA mean and basis D_0 of eq. (5): set from data, not trained."""


def _neuron(u: jax.Array, threshold: jax.Array) -> jax.Array:
  # The threshold is used by magnitude: it stays a valid (nonnegative)
  # shrinkage whatever sign SGD gives the parameter, and, unlike clipping,
  # never cuts its gradient off.
  return ops.soft_threshold(u, jnp.abs(threshold), validate=False)


def _apply_multipliers(x: jax.Array, multipliers: jax.Array | None
                       ) -> jax.Array:
  return x if multipliers is None else x * multipliers


def unroll(drive: jax.Array, thresholds: jax.Array,
           recurrence: Callable[[jax.Array, Any], jax.Array],
           stage_params: Any,
           output_multipliers: jax.Array | None = None,
           return_all_stages: bool = False) -> jax.Array:
  """The k+1 soft-threshold layers of unrolled ISTA (eqs. 2, 5), by lax.scan.

  `z_0 = N_0(drive)` and `z_i = N_i(drive + recurrence(z_{i-1}, params_i))`
  for i = 1..k, each layer's output optionally multiplied by a dropout mask.

  Args:
    drive: `L1(x)`, shape `(..., m)`; the same in every layer.
    thresholds: per-layer, per-unit thresholds, shape `(k + 1, m)`.
    recurrence: `L2`, a function of the previous code and the stage's
      parameters.
    stage_params: pytree of the k stages' parameters, leading axis k.
    output_multipliers: None, or inverted-dropout multipliers of shape
      `(k + 1,) + drive.shape`.
    return_all_stages: return z_0..z_k stacked, from the scan's outputs.

  Returns:
    z_k, shape `(..., m)`, or `(k + 1, ..., m)` with `return_all_stages`.
  """
  first, later = ((None, None) if output_multipliers is None
                  else (output_multipliers[0], output_multipliers[1:]))
  first_codes = _apply_multipliers(_neuron(drive, thresholds[0]), first)

  def layer(codes, inputs):
    params, threshold, multipliers = inputs
    codes = _neuron(drive + recurrence(codes, params), threshold)
    codes = _apply_multipliers(codes, multipliers)
    return codes, codes if return_all_stages else None

  codes, later_codes = jax.lax.scan(layer, first_codes,
                                    (stage_params, thresholds[1:], later))
  if return_all_stages:
    return jnp.concatenate([first_codes[None], later_codes])
  return codes


def double_sparsity_init(key: jax.Array, signal_dim: int, code_dim: int,
                         sparsity: int, *, normalize: bool = True,
                         dtype: Any = jnp.float32) -> jax.Array:
  """DDSE's initial S: s randomly chosen ones per column (Sec. 4.1).

  Args:
    key: PRNG key choosing the supports.
    signal_dim: n, the number of rows.
    code_dim: m, the number of columns.
    sparsity: s, the ones per column, `1 <= s <= n`.
    normalize: divide S by its spectral norm, the paper's standing
      assumption `||D||_2 = ||D_0 S||_2 = 1` (Sec. 2.1). Then `I - S^T S`
      is non-expansive and the initial network is k+1 ISTA iterations with
      step 1; raw ones make `S^T S` of norm about `s + (m - 1) s^2 / n`,
      so the untrained stages blow their input up by that factor.
    dtype: dtype of the result.

  Returns:
    S, shape `(n, m)`, with exactly s equal positive entries per column.
  """
  validation.check_int_in_range('sparsity (at most signal_dim)', sparsity, 1,
                                signal_dim)
  # The first s entries of an independent random permutation of the rows.
  rows = jnp.argsort(jax.random.uniform(key, (code_dim, signal_dim)),
                     axis=1)[:, :sparsity]
  support = jnp.zeros((signal_dim, code_dim), dtype).at[
      rows, jnp.arange(code_dim)[:, None]].set(1)
  if normalize:
    support = support / jnp.linalg.norm(support, ord=2)
  return support


class _PCAInputNetwork(nnx.Module):
  """Shared input and head: `x_pca = D_0^T (x - mean)` (eq. 5), softmax head.

  Until `set_pca` (or `from_data`) gives it a basis, the buffer holds the
  identity and a zero mean, so `x_pca = x`.
  """

  def __init__(self, signal_dim: int, code_dim: int, *, num_stages: int,
               num_classes: int | None, param_dtype: Any, rngs: nnx.Rngs):
    self.signal_dim = validation.check_int_in_range('signal_dim', signal_dim,
                                                    1, _MAX_SIZE)
    self.code_dim = validation.check_int_in_range('code_dim', code_dim, 1,
                                                  _MAX_SIZE)
    self.num_stages = validation.check_int_in_range('num_stages', num_stages,
                                                    1, _MAX_SIZE)
    self.pca_mean = PCABuffer(jnp.zeros((signal_dim,), param_dtype))
    self.pca_components = PCABuffer(jnp.eye(signal_dim, dtype=param_dtype))
    if num_classes is None:
      self.head = None
    else:
      validation.check_int_in_range('num_classes', num_classes, 1, _MAX_SIZE)
      self.head = nnx.Linear(code_dim, num_classes, param_dtype=param_dtype,
                             rngs=rngs)

  def set_pca(self, basis: dictionary.PCABasis) -> None:
    """Sets the mean and D_0 (`l0enc.dictionary.pca_basis` of training data).

    Args:
      basis: a `PCABasis` with mean `(n,)` and orthonormal components
        `(n, n)` as columns.
    """
    mean, components = jnp.asarray(basis.mean), jnp.asarray(basis.components)
    n = self.signal_dim
    if mean.shape != (n,) or components.shape != (n, n):
      raise ValueError(f'basis must have mean ({n},) and components ({n}, '
                       f'{n}), got {mean.shape} and {components.shape}.')
    validation.check_finite('basis.mean', mean)
    validation.check_finite('basis.components', components)
    # Copies (astype of the same dtype would alias): train_step donates the
    # model state, which must not delete the caller's basis.
    self.pca_mean[...] = jnp.array(mean, self.pca_mean[...].dtype, copy=True)
    self.pca_components[...] = jnp.array(
        components, self.pca_components[...].dtype, copy=True)

  @classmethod
  def from_data(cls, signals: jax.Array, *args, **kwargs):
    """Builds the model and sets its PCA from the training signals (eq. 5).

    Args:
      signals: training signals, shape `(num_examples, signal_dim)`.
      *args: the constructor's positional arguments.
      **kwargs: the constructor's keyword arguments.

    Returns:
      The model, with `set_pca(l0enc.dictionary.pca_basis(signals))` done.
    """
    model = cls(*args, **kwargs)
    model.set_pca(dictionary.pca_basis(signals))
    return model

  def _pca_project(self, x: jax.Array) -> jax.Array:
    x = jnp.asarray(x)
    if x.ndim < 1 or x.shape[-1] != self.signal_dim:
      raise ValueError(f'inputs must have shape (..., {self.signal_dim}), '
                       f'got {x.shape}.')
    return (x - self.pca_mean[...]) @ self.pca_components[...]

  def features(self, x: jax.Array) -> jax.Array:
    """The last hidden layer `(..., code_dim)` for signals `(..., n)`."""
    raise NotImplementedError

  def __call__(self, x: jax.Array) -> jax.Array:
    """Logits `(..., num_classes)` of the softmax head; the features without.

    Args:
      x: signals, shape `(..., signal_dim)`.
    """
    features = self.features(x)
    return features if self.head is None else self.head(features)


class DDSE(_PCAInputNetwork):
  """The Deep Double Sparsity Encoder (eq. 5, Fig. 2), and baseline V.

  Computes `z_0 = N_0(W1 x_pca)` and, for each of the k stages,
  `z_i = N_i(W1 x_pca + z_{i-1} - W3_i W2_i z_{i-1})`: W2_i and W3_i are two
  layers with no nonlinearity between them so that each carries its own
  constraint (Sec. 3.1), untied across stages and decoupled from W1 and
  each other. With `shortcuts=False` (baseline V) the identity term
  `z_{i-1}` is dropped.

  Initialization (Sec. 4.1): one random S with s ones per column
  (`double_sparsity_init`), `W1 = W3_i = S^T`, `W2_i = S` for every stage,
  which satisfies the constraints. Keep them with `sparse_projection(
  model.sparsity_constraints())` in the optimizer chain, and project the
  reported model once more with `project_params` if training did not end
  on a projection step.

  Attributes:
    input_weights: W1, shape `(m, n)`, at most s nonzeros per row.
    synthesis_weights: W2_1..W2_k, shape `(k, n, m)`, at most s nonzeros per
      column.
    analysis_weights: W3_1..W3_k, shape `(k, m, n)`, at most s nonzeros per
      row.
    threshold: the thresholds of N_0..N_k, shape `(k + 1, m)`; the neurons
      shrink by their magnitude.
    pca_mean, pca_components: the `PCABuffer`s of the input projection.
    head: the `nnx.Linear` softmax head, or None.
  """

  def __init__(self, signal_dim: int, code_dim: int, *, sparsity: int,
               num_stages: int = 2, num_classes: int | None = None,
               shortcuts: bool = True, threshold: float = 0.01,
               normalize_init: bool = True, param_dtype: Any = jnp.float32,
               rngs: nnx.Rngs):
    """Builds a DDSE initialized from a random double sparsity S.

    Args:
      signal_dim: n, the input (and PCA) dimension.
      code_dim: m, the feature dimension.
      sparsity: s, the nonzeros per row of W1, W3 and per column of W2,
        `1 <= s <= n` (their rows / columns have length n). The paper's
        default is n / 4.
      num_stages: k >= 1, the number of W2/W3 stages; the network has k + 1
        layers.
      num_classes: the classes of the linear softmax head; None for none.
      shortcuts: keep the identity term `z_{i-1}` of `L2 = I - W3 W2`
        (DDSE); False gives baseline V.
      threshold: the initial value of every threshold, positive. It should
        be small next to the initial `|W1 x_pca|` (of order
        `||x - mean|| / ||S||_2` per unit), or most units start switched
        off and without gradient.
      normalize_init: scale S to unit spectral norm (see
        `double_sparsity_init`); False gives the literal 0/1 S.
      param_dtype: dtype of the parameters and PCA buffers.
      rngs: `rngs.params` draws S and the head's weights.
    """
    super().__init__(signal_dim, code_dim, num_stages=num_stages,
                     num_classes=num_classes, param_dtype=param_dtype,
                     rngs=rngs)
    self.sparsity = validation.check_int_in_range(
        'sparsity (at most signal_dim, the length of the rows of W1 and W3 '
        'and of the columns of W2)', sparsity, 1, signal_dim)
    validation.check_positive('threshold', threshold)
    self.shortcuts = bool(shortcuts)
    support = double_sparsity_init(rngs.params(), signal_dim, code_dim,
                                   sparsity, normalize=normalize_init,
                                   dtype=param_dtype)
    stages = (num_stages,)
    self.input_weights = nnx.Param(support.T)
    self.synthesis_weights = nnx.Param(
        jnp.broadcast_to(support, stages + support.shape))
    self.analysis_weights = nnx.Param(
        jnp.broadcast_to(support.T, stages + support.T.shape))
    self.threshold = nnx.Param(
        jnp.full((num_stages + 1, code_dim), threshold, param_dtype))

  def sparsity_constraints(self) -> dict[str, transforms.SparsityConstraint]:
    """The constraints of eq. (6), for `l0enc.transforms`.

    The patterns match the three weights at the top level of the parameter
    state and inside any parent module ('encoder/input_weights').

    Returns:
      `{path pattern: SparsityConstraint}` for W1 and W3 (rows) and W2
      (columns), each with this model's s.
    """
    rows = transforms.SparsityConstraint(transforms.ROWS, self.sparsity)
    columns = transforms.SparsityConstraint(transforms.COLUMNS, self.sparsity)
    return {'(.*/)?input_weights': rows, '(.*/)?synthesis_weights': columns,
            '(.*/)?analysis_weights': rows}

  def features(self, x: jax.Array, *,
               return_all_stages: bool = False) -> jax.Array:
    """z_k of eq. (5) for signals `(..., n)`; shape `(..., m)`.

    With `return_all_stages`, z_0..z_k stacked: shape `(k + 1, ..., m)`.
    """
    drive = self._pca_project(x) @ self.input_weights[...].T

    def recurrence(codes, weights):
      synthesis, analysis = weights
      feedback = (codes @ synthesis.T) @ analysis.T  # W3 W2 z.
      return codes - feedback if self.shortcuts else -feedback

    return unroll(drive, self.threshold[...], recurrence,
                  (self.synthesis_weights[...], self.analysis_weights[...]),
                  return_all_stages=return_all_stages)


class _RegularizedNetwork(_PCAInputNetwork):
  """A network with dropout or dropconnect, on in training mode only."""

  def __init__(self, signal_dim: int, code_dim: int, *, num_stages: int,
               num_classes: int | None, param_dtype: Any, rngs: nnx.Rngs):
    super().__init__(signal_dim, code_dim, num_stages=num_stages,
                     num_classes=num_classes, param_dtype=param_dtype,
                     rngs=rngs)
    self.deterministic = False
    self.dropout_rngs = rngs.dropout.fork()

  def _multipliers(self, rate: float, shape: tuple[int, ...],
                   dtype: Any) -> jax.Array | None:
    """Inverted-dropout multipliers: 0 with probability `rate`, else 1/keep.

    Scaling the kept entries by `1 / (1 - rate)` in training keeps every
    expectation unchanged, so evaluation uses the plain activations (for
    dropout) or the full weights (for dropconnect).

    Returns:
      The multipliers of the given shape, or None in evaluation mode or for
      rate 0 (then no key is drawn).
    """
    if self.deterministic or rate == 0:
      return None
    keep = 1.0 - rate
    mask = jax.random.bernoulli(self.dropout_rngs(), keep, shape)
    return mask.astype(dtype) / jnp.asarray(keep, dtype)


def _check_rate(name: str, rate: float) -> float:
  validation.check_nonnegative(name, rate)
  if rate >= 1:
    raise ValueError(f'{name} must be in [0, 1), got {rate}.')
  return float(rate)


class FullyConnectedBaseline(_RegularizedNetwork):
  """Baselines I-III: a (k+1)-layer fully connected network (Sec. 4.2).

  `h_0 = f(W_0 x_pca + b_0)`, `h_i = f(W_i h_{i-1} + b_i)` for i = 1..k,
  with W_0 of shape `(m, n)` and W_i `(m, m)`. The paper leaves the neuron
  of these generic networks open; ReLU is the default, the neuron of the
  dropout and dropconnect networks of its refs. [12], [13] whose settings
  baselines II and III copy (pass `activation` to change it).

  Baseline II is `dropout_rate=0.5`: each layer's output is masked. Baseline
  III is `dropconnect_rate=0.5`: each layer's weight matrix (not the bias)
  is masked with one mask per forward pass (per minibatch, where ref. [13]
  draws one per example), scaled by 1/keep like inverted dropout, so
  evaluation uses the full weights (the mean network, rather than [13]'s
  Gaussian moment matching).

  Attributes:
    input_weights, input_bias: the first layer, `(m, n)` and `(m,)`.
    hidden_weights, hidden_bias: the k further layers, `(k, m, m)` and
      `(k, m)`.
  """

  def __init__(self, signal_dim: int, code_dim: int, *, num_stages: int = 2,
               num_classes: int | None = None, dropout_rate: float = 0.0,
               dropconnect_rate: float = 0.0,
               activation: Callable[[jax.Array], jax.Array] = jax.nn.relu,
               param_dtype: Any = jnp.float32, rngs: nnx.Rngs):
    """Builds the network with LeCun normal weights and zero biases.

    Args:
      signal_dim: n, the input dimension.
      code_dim: m, the width of every layer.
      num_stages: k >= 1; the network has k + 1 layers.
      num_classes: the classes of the linear softmax head; None for none.
      dropout_rate: dropout rate on each layer's output, in [0, 1).
      dropconnect_rate: dropconnect rate on each layer's weights, in [0, 1).
      activation: the neuron.
      param_dtype: dtype of the parameters.
      rngs: `rngs.params` initializes the weights, `rngs.dropout` (or
        `default`) draws the masks.
    """
    super().__init__(signal_dim, code_dim, num_stages=num_stages,
                     num_classes=num_classes, param_dtype=param_dtype,
                     rngs=rngs)
    self.dropout_rate = _check_rate('dropout_rate', dropout_rate)
    self.dropconnect_rate = _check_rate('dropconnect_rate', dropconnect_rate)
    self.activation = activation
    init = nnx.initializers.lecun_normal(in_axis=-1, out_axis=-2)
    stacked_init = nnx.initializers.lecun_normal(in_axis=-1, out_axis=-2,
                                                 batch_axis=(0,))
    self.input_weights = nnx.Param(
        init(rngs.params(), (code_dim, signal_dim), param_dtype))
    self.input_bias = nnx.Param(jnp.zeros((code_dim,), param_dtype))
    self.hidden_weights = nnx.Param(stacked_init(
        rngs.params(), (num_stages, code_dim, code_dim), param_dtype))
    self.hidden_bias = nnx.Param(jnp.zeros((num_stages, code_dim),
                                           param_dtype))

  def features(self, x: jax.Array) -> jax.Array:
    """The output of the last of the k+1 layers, shape `(..., m)`."""
    x_pca = self._pca_project(x)
    input_weights = self.input_weights[...]
    hidden_weights = self.hidden_weights[...]
    input_weights = _apply_multipliers(input_weights, self._multipliers(
        self.dropconnect_rate, input_weights.shape, input_weights.dtype))
    hidden_weights = _apply_multipliers(hidden_weights, self._multipliers(
        self.dropconnect_rate, hidden_weights.shape, hidden_weights.dtype))
    hidden = self.activation(x_pca @ input_weights.T + self.input_bias[...])
    hidden = _apply_multipliers(hidden, self._multipliers(
        self.dropout_rate, hidden.shape, hidden.dtype))
    dropout = self._multipliers(self.dropout_rate,
                                (self.num_stages,) + hidden.shape, hidden.dtype)

    def layer(hidden, inputs):
      weights, bias, multipliers = inputs
      hidden = self.activation(hidden @ weights.T + bias)
      return _apply_multipliers(hidden, multipliers), None

    hidden, _ = jax.lax.scan(
        layer, hidden, (hidden_weights, self.hidden_bias[...], dropout))
    return hidden


class LISTABaseline(_RegularizedNetwork):
  """Baseline IV: untied LISTA with dropout (eq. 2, Fig. 1(b), Sec. 4.2).

  `z_0 = N_0(W x_pca)`, `z_i = N_i(W x_pca + S_i z_{i-1})` for i = 1..k,
  with soft thresholds as in DDSE and dropout on each layer's output. It has
  DDSE's layer sizes with `W3_i W2_i` merged into one dense `(m, m)` matrix
  and no sparsity constraint: `m n + k m^2` weights (Sec. 3.3.1).
  Initialized as k+1 ISTA iterations with step 1 for a random Gaussian
  dictionary D of unit spectral norm: `W = D^T`, `S_i = I - D^T D`. Not
  tied to s (the paper's baselines I-IV do not depend on s).

  Attributes:
    input_weights: W, shape `(m, n)`.
    recurrent_weights: S_1..S_k, shape `(k, m, m)`.
    threshold: the thresholds of N_0..N_k, shape `(k + 1, m)`.
  """

  def __init__(self, signal_dim: int, code_dim: int, *, num_stages: int = 2,
               num_classes: int | None = None,
               dropout_rate: float = PAPER_DROPOUT_RATE,
               threshold: float = 0.01, param_dtype: Any = jnp.float32,
               rngs: nnx.Rngs):
    """Builds the untied LISTA network.

    Args:
      signal_dim: n, the input dimension.
      code_dim: m, the code dimension.
      num_stages: k >= 1, the number of recurrent stages.
      num_classes: the classes of the linear softmax head; None for none.
      dropout_rate: dropout rate on each layer's output, in [0, 1).
      threshold: the initial value of every threshold, positive.
      param_dtype: dtype of the parameters.
      rngs: `rngs.params` draws D and the head, `rngs.dropout` (or
        `default`) the masks.
    """
    super().__init__(signal_dim, code_dim, num_stages=num_stages,
                     num_classes=num_classes, param_dtype=param_dtype,
                     rngs=rngs)
    self.dropout_rate = _check_rate('dropout_rate', dropout_rate)
    validation.check_positive('threshold', threshold)
    atoms = jax.random.normal(rngs.params(), (signal_dim, code_dim),
                              param_dtype)
    atoms = atoms / jnp.linalg.norm(atoms, ord=2)
    self.input_weights = nnx.Param(atoms.T)
    self.recurrent_weights = nnx.Param(jnp.broadcast_to(
        jnp.eye(code_dim, dtype=param_dtype) - atoms.T @ atoms,
        (num_stages, code_dim, code_dim)))
    self.threshold = nnx.Param(
        jnp.full((num_stages + 1, code_dim), threshold, param_dtype))

  def features(self, x: jax.Array, *,
               return_all_stages: bool = False) -> jax.Array:
    """z_k for signals `(..., n)`; shape `(..., m)`.

    With `return_all_stages`, z_0..z_k stacked: shape `(k + 1, ..., m)`.
    """
    drive = self._pca_project(x) @ self.input_weights[...].T
    dropout = self._multipliers(self.dropout_rate,
                                (self.num_stages + 1,) + drive.shape,
                                drive.dtype)
    return unroll(drive, self.threshold[...],
                  lambda codes, recurrent: codes @ recurrent.T,
                  self.recurrent_weights[...], dropout,
                  return_all_stages=return_all_stages)


def make_model(kind: str, signal_dim: int, code_dim: int, *, sparsity: int,
               num_stages: int = 2, num_classes: int | None = None,
               rngs: nnx.Rngs, **kwargs) -> nnx.Module:
  """Builds DDSE or one of its baselines with the paper's settings (Sec. 4.2).

  Args:
    kind: one of `MODEL_KINDS`: 'fc' (I), 'fc_dropout' (II, rate 0.5),
      'fc_dropconnect' (III, rate 0.5), 'lista_dropout' (IV, rate 0.5),
      'ddse_no_shortcuts' (V) or 'ddse'.
    signal_dim: n.
    code_dim: m.
    sparsity: s, used by V and DDSE only (I-IV do not depend on it).
    num_stages: k.
    num_classes: the classes of the softmax head; None for none.
    rngs: the random streams.
    **kwargs: further constructor arguments (e.g. `threshold`); they
      override the paper's settings.

  Returns:
    The model, in training mode, with the identity PCA: call `set_pca`. All
    kinds have `features(x)`, `__call__(x)` (logits) and `set_pca(basis)`.
  """
  common = dict(num_stages=num_stages, num_classes=num_classes, rngs=rngs)
  if kind in (FULLY_CONNECTED, FULLY_CONNECTED_DROPOUT,
              FULLY_CONNECTED_DROPCONNECT):
    rates = {FULLY_CONNECTED_DROPOUT: dict(dropout_rate=PAPER_DROPOUT_RATE),
             FULLY_CONNECTED_DROPCONNECT: dict(
                 dropconnect_rate=PAPER_DROPOUT_RATE)}.get(kind, {})
    return FullyConnectedBaseline(signal_dim, code_dim,
                                  **(common | rates | kwargs))
  if kind == LISTA_DROPOUT:
    return LISTABaseline(signal_dim, code_dim, **(common | kwargs))
  if kind in (DDSE_NO_SHORTCUTS, DDSE_MODEL):
    return DDSE(signal_dim, code_dim, sparsity=sparsity,
                **(common | dict(shortcuts=kind == DDSE_MODEL) | kwargs))
  raise ValueError(f'kind must be one of {MODEL_KINDS}, got {kind!r}.')
