"""Learned sparse encoders as Flax NNX modules (Wang et al. 2016, Figs. 1, 3, 4).

The unrolled encoders compute K stages of

    z_{k+1} = neuron(W x + S z_k),   z_0 = 0,                          (4), (8)

with codes along the last axis: inputs `(..., n)` give codes `(..., p)`. The
neuron is the soft threshold for `LISTA` (eq. 5), the learned hard threshold
`theta * HELU_sigma(u / theta)` for `DeepL0Encoder` (eqs. 7, 9) and max-M
pooling/unpooling for `DeepMSparseEncoder` (eqs. 10, 11). `MLPEncoder` is the
paper's fully connected baseline.

Stages share W, S and theta (`tied=True`, the paper's setting), or carry
their own S and theta (`tied=False`); the neuron parameters can also be tied
or not apart from S (`LISTA(tied=True, tied_thresholds=False)`: one S and a
threshold per stage, the field's LISTA). Either way the stages run under
`lax.scan`.
`encoder(x, return_all_stages=True)` returns the codes of every stage,
`(K, ..., p)`, from the scan's stacked outputs (per-stage losses, NMSE per
stage), `encoder(x, num_stages=k)` runs the first k stages only, and
`parameter_stages()` says which stage each parameter slice belongs to
(for `l0enc.stagewise`). Options of the field's newer encoders (Chen et al.
2018): support selection in the Deep l0 encoder's HELU (`support_selection`,
`l0enc.ops.helu_ss`) and one M per stage in the Deep M-Sparse encoder.
Since z_0 = 0, the first stage is `neuron(W x)`, so an untied encoder stores
`num_stages - 1` recurrent matrices.

`from_dictionary` initializes an encoder as K iterations of IHT (or ISTA for
LISTA) with step size mu (eq. 8, in the general form of `l0enc.solvers`):
`W = mu D^T`, `S = I - mu D^T D`; before training, K stages reproduce K
iterations from zero.

Training and evaluation mode: `model.train()` / `model.eval()` (Flax's
`deterministic` attribute) switch the `DeepL0Encoder` between HELU_sigma with
its current sigma and the exact HELU (sigma = 0), and the `MLPEncoder` between
dropout on and off. Sigma is model state of type `HeluSigma` (not a `Param`,
so no optimizer touches it): change it with `set_helu_sigma`; a jitted
function of the model's state sees the new value without recompiling.
"""

from collections.abc import Sequence
from typing import Any

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from l0enc import ops
from l0enc import solvers
from l0enc import validation


class HeluSigma(nnx.Variable):
  """The ramp width sigma of HELU_sigma (eq. 9): model state, not trained."""


class FixedGain(nnx.Variable):
  """Row norms of W held fixed (`input_norm='fixed'`): state, not trained."""


# `DeepL0Encoder(input_norm=...)`: W as the paper trains it (None), or with
# its rows normalized, `W = diag(g) V / ||V||_rows`, the gains g fixed at
# their initial values (a norm constraint) or trained (weight normalization,
# Salimans and Kingma 2016).
INPUT_NORMS = (None, 'fixed', 'learned')


def set_helu_sigma(model: nnx.Module, sigma: float) -> int:
  """Sets sigma of every HELU_sigma neuron in `model`, nested modules included.

  Args:
    model: any NNX module, e.g. a `DeepL0Encoder` or a task model holding one.
    sigma: the new ramp width, in [0, 1). It only acts in training mode; in
      evaluation mode the neurons are exact HELUs.

  Returns:
    The number of `HeluSigma` variables set (0 for models without HELU).
  """
  _check_sigma(sigma)
  if not validation.is_concrete(sigma):
    # Set under jit: a bad value becomes NaN, which the neurons propagate.
    sigma = validation.nan_unless((sigma >= 0) & (sigma < 1), sigma,
                                  'sigma must be in [0, 1), got {sigma}.',
                                  sigma=sigma)
  count = 0
  for _, node in nnx.iter_graph(model):
    if isinstance(node, HeluSigma):
      node[...] = jnp.asarray(sigma, node[...].dtype)
      count += 1
  return count


def _check_sigma(sigma: float) -> None:
  validation.check_nonnegative('sigma', sigma)
  if validation.is_concrete(sigma) and float(sigma) >= 1:
    raise ValueError(f'sigma must be in [0, 1), got {sigma}.')


def _check_inputs(x: jax.Array, signal_dim: int) -> jax.Array:
  """Float inputs of the right shape; concrete ones must be finite.

  Traced NaN inputs are not caught here, but they give NaN codes: every
  neuron propagates NaN (`l0enc.ops`).
  """
  x = validation.as_float_array('inputs', x, allow_bfloat16=True)
  if x.ndim < 1 or x.shape[-1] != signal_dim:
    raise ValueError(f'inputs must have shape (..., {signal_dim}), got '
                     f'{x.shape}.')
  validation.check_finite('inputs', x)
  return x


# Support selection (Chen et al. 2018): the LISTA-CPSS code's schedule.
SUPPORT_SELECTION_PERCENT = 1.2
SUPPORT_SELECTION_MAX_PERCENT = 13.0


def check_num_stages(num_stages: int | None, total: int) -> int:
  """The number of stages to run: `total` for None, else checked in [1, total].

  Args:
    num_stages: the requested number of stages, or None.
    total: the encoder's number of stages.

  Returns:
    The number of stages, a Python int.
  """
  if num_stages is None:
    return total
  return validation.check_int_in_range('num_stages', num_stages, 1, total)


def _constant(value: jax.Array) -> nnx.Initializer:
  """An initializer that broadcasts a fixed array to the requested shape."""
  def init(key, shape, dtype):
    del key
    return jnp.broadcast_to(jnp.asarray(value, dtype), shape)
  return init


def _scaled_normal() -> nnx.Initializer:
  """N(0, 1/fan_in) for weights stored as `(stages..., fan_out, fan_in)`.

  The paper's orientation of W and S; the fan-in is the last axis.
  """
  def init(key, shape, dtype):
    return jax.random.normal(key, shape, dtype) / jnp.sqrt(
        jnp.asarray(shape[-1], dtype))
  return init


class _UnrolledEncoder(nnx.Module):
  """Shared body of the unrolled encoders: `z_{k+1} = neuron(W x + S z_k)`.

  Subclasses define `_neuron(u, neuron_params)` and `_neuron_parameters()`
  (a pytree of per-stage neuron parameters, leading stage axis unless
  `tied_neurons`).
  """

  def __init__(self, signal_dim: int, code_dim: int, *, num_stages: int,
               tied: bool, param_dtype: Any, input_init: nnx.Initializer,
               recurrent_init: nnx.Initializer, rngs: nnx.Rngs,
               tied_neurons: bool | None = None):
    self.signal_dim = validation.check_int_in_range(
        'signal_dim', signal_dim, 1, 2**31 - 1)
    self.code_dim = validation.check_int_in_range(
        'code_dim', code_dim, 1, 2**31 - 1)
    self.num_stages = validation.check_int_in_range(
        'num_stages', num_stages, 1, 2**31 - 1)
    self.tied = bool(tied)
    # The neuron parameters' sharing; S's by default.
    self.tied_neurons = self.tied if tied_neurons is None else bool(
        tied_neurons)
    recurrent_shape = (() if self.tied else (self.num_stages - 1,)) + (
        code_dim, code_dim)
    self.input_weights = nnx.Param(
        input_init(rngs.params(), (code_dim, signal_dim), param_dtype))
    self.recurrent_weights = nnx.Param(
        recurrent_init(rngs.params(), recurrent_shape, param_dtype))

  def effective_input_weights(self) -> jax.Array:
    """W as the stages use it, `(code_dim, signal_dim)`: the stored one."""
    return self.input_weights[...]

  @property
  def _stage_shape(self) -> tuple[int, ...]:
    """Leading shape of the neuron parameters: () if tied, else (K,)."""
    return () if self.tied_neurons else (self.num_stages,)

  def _neuron(self, u: jax.Array, neuron_params: Any,
              settings: Any) -> jax.Array:
    raise NotImplementedError

  def _neuron_parameters(self) -> Any:
    raise NotImplementedError

  def _stage_settings(self) -> Any:
    """A pytree of per-stage neuron settings, leading axis K (default none)."""
    return None

  def __call__(self, x: jax.Array, *, return_all_stages: bool = False,
               num_stages: int | None = None) -> jax.Array:
    """Encodes signals: K stages of `z <- neuron(W x + S z)` from `z = 0`.

    Args:
      x: signals, shape `(..., signal_dim)`.
      return_all_stages: return the codes of every stage, stacked along a
        new leading axis (the `lax.scan`'s stacked outputs, so the last
        stage costs nothing extra), instead of the last stage's only. For
        per-stage losses and NMSE-per-stage curves.
      num_stages: run only the first `k` stages, `1 <= k <= self.num_stages`
        (a Python int); all of them by default. Stage-wise training uses it
        to train stage k on its own output without computing the later
        stages.

    Returns:
      Codes of shape `(..., code_dim)`, or `(k, ..., code_dim)` with
      `return_all_stages`, row `t` holding the output of stage `t + 1`.
    """
    x = _check_inputs(x, self.signal_dim)
    num_stages = check_num_stages(num_stages, self.num_stages)
    drive = x @ self.effective_input_weights().T  # W x, in every stage.
    recurrent = self.recurrent_weights[...]
    neuron_params = self._neuron_parameters()
    # Per-stage settings that are not parameters (support selection counts,
    # M per stage) vary along the stages even when the weights are tied.
    stage_settings = self._stage_settings()
    first_settings = jax.tree.map(lambda a: a[0], stage_settings)
    later_settings = jax.tree.map(lambda a: a[1:num_stages], stage_settings)
    if self.tied_neurons:
      first_params, later_params = neuron_params, None
    else:
      first_params = jax.tree.map(lambda a: a[0], neuron_params)
      later_params = jax.tree.map(lambda a: a[1:num_stages], neuron_params)
    later_weights = None if self.tied else recurrent[:num_stages - 1]

    def stage(codes, inputs):
      stage_weights, stage_params, settings = inputs
      weights = recurrent if self.tied else stage_weights
      params = neuron_params if self.tied_neurons else stage_params
      codes = self._neuron(drive + codes @ weights.T, params, settings)
      return codes, codes if return_all_stages else None

    first_codes = self._neuron(drive, first_params, first_settings)
    codes, later_codes = jax.lax.scan(
        stage, first_codes, (later_weights, later_params, later_settings),
        length=num_stages - 1)
    if return_all_stages:
      return jnp.concatenate([first_codes[None], later_codes])
    return codes

  def parameter_stages(self) -> dict[str, Any]:
    """The stage (1-based) of each parameter slice, for `l0enc.stagewise`.

    Returns:
      `{parameter name: stages}`: an int for a parameter used from that
      stage on (W and tied parameters: 1; a tied S with untied neurons: 2,
      the first stage that uses it), or an int array giving the stage of
      each slice along the parameter's leading axis.
    """
    if self.tied and self.tied_neurons:
      return {name: 1 for name in self._parameter_names()}
    shared = {'input_weights': 1, 'input_gain': 1,
              'recurrent_weights': (min(2, self.num_stages) if self.tied
                                    else np.arange(2, self.num_stages + 1))}
    neuron_stages = (1 if self.tied_neurons
                     else np.arange(1, self.num_stages + 1))
    return {name: shared.get(name, neuron_stages)
            for name in self._parameter_names()}

  def _parameter_names(self) -> list[str]:
    return [name for name, value in vars(self).items()
            if isinstance(value, nnx.Param)]

  @classmethod
  def _from_iteration(cls, dictionary: jax.Array, step_size: float | None,
                      param_dtype: Any, **kwargs):
    """Builds the encoder with `W = mu D^T`, `S = I - mu D^T D` (eq. 8).

    Args:
      dictionary: `D`, shape `(signal_dim, code_dim)`.
      step_size: mu; `1 / ||D||_2^2` when None.
      param_dtype: parameter dtype; the dictionary's dtype when None.
      **kwargs: the remaining constructor arguments of `cls`.

    Returns:
      `(encoder, step_size)`.
    """
    dictionary = validation.as_float_array('dictionary', dictionary)
    if dictionary.ndim != 2:
      raise ValueError('dictionary must have shape (signal_dim, code_dim), '
                       f'got {dictionary.shape}.')
    validation.check_finite('dictionary', dictionary)
    if step_size is None:
      lipschitz = solvers.lipschitz_constant(dictionary)
      if validation.is_concrete(lipschitz) and float(lipschitz) == 0:
        raise ValueError('dictionary is all zero (||D||_2 = 0): no step size '
                         'can be derived from it.')
      step_size = 1.0 / lipschitz
    validation.check_positive('step_size', step_size)
    signal_dim, code_dim = dictionary.shape
    input_weights = step_size * dictionary.T
    recurrent_weights = (jnp.eye(code_dim, dtype=dictionary.dtype)
                         - step_size * dictionary.T @ dictionary)
    encoder = cls(signal_dim, code_dim,
                  param_dtype=(dictionary.dtype if param_dtype is None
                               else param_dtype),
                  input_init=_constant(input_weights),
                  recurrent_init=_constant(recurrent_weights),
                  rngs=nnx.Rngs(0), **kwargs)
    return encoder, step_size


class LISTA(_UnrolledEncoder):
  """Learned ISTA (Gregor and LeCun 2010; eqs. 4-5, Fig. 1).

  `z_{k+1} = s_theta(W x + S z_k)` with the soft threshold
  `[s_theta(u)]_i = sign(u_i) (|u_i| - theta_i)_+`; W, S and the per-entry
  thresholds theta are trained.

  Attributes:
    input_weights: W, shape `(code_dim, signal_dim)`.
    recurrent_weights: S, shape `(code_dim, code_dim)` if tied, else
      `(num_stages - 1, code_dim, code_dim)` (stages 2..K).
    threshold: theta, shape `(code_dim,)` if the thresholds are tied, else
      `(num_stages, code_dim)`; without the last axis if
      `scalar_threshold`.
  """

  def __init__(self, signal_dim: int, code_dim: int, *, num_stages: int = 2,
               tied: bool = True, threshold: float = 0.1,
               param_dtype: Any = jnp.float32,
               input_init: nnx.Initializer = _scaled_normal(),
               recurrent_init: nnx.Initializer = _scaled_normal(),
               rngs: nnx.Rngs, tied_thresholds: bool | None = None,
               scalar_threshold: bool = False):
    """Builds a LISTA encoder with random weights.

    Args:
      signal_dim: n, the length of the input signals.
      code_dim: p, the length of the codes.
      num_stages: K >= 1, the number of unrolled stages.
      tied: share S (and theta, unless `tied_thresholds` says otherwise)
        across stages (True) or not.
      threshold: initial value of every theta_i, positive.
      param_dtype: dtype of the parameters.
      input_init: initializer of W, shape `(code_dim, signal_dim)`.
      recurrent_init: initializer of S.
      rngs: random streams; `rngs.params` initializes W and S.
      tied_thresholds: share theta across stages; `tied` when None.
      scalar_threshold: one theta for all entries (per stage if untied)
        instead of one per entry.
    """
    super().__init__(signal_dim, code_dim, num_stages=num_stages, tied=tied,
                     param_dtype=param_dtype, input_init=input_init,
                     recurrent_init=recurrent_init, rngs=rngs,
                     tied_neurons=tied_thresholds)
    validation.check_positive('threshold', threshold)
    self.threshold = nnx.Param(jnp.full(
        self._stage_shape + (() if scalar_threshold else (code_dim,)),
        threshold, param_dtype))

  @classmethod
  def from_dictionary(cls, dictionary: jax.Array, *, lam: float,
                      num_stages: int = 2, tied: bool = True,
                      step_size: float | None = None,
                      param_dtype: Any = None,
                      tied_thresholds: bool | None = None,
                      scalar_threshold: bool = False) -> 'LISTA':
    """K stages of ISTA on problem (3), `1/2||x - D a||^2 + lam ||a||_1`.

    `W = mu D^T`, `S = I - mu D^T D` and `theta = lam * mu` (the proximal
    step of ISTA), so that the untrained encoder computes exactly K ISTA
    iterations from zero.

    Args:
      dictionary: D, shape `(signal_dim, code_dim)`.
      lam: the l1 weight, positive.
      num_stages: K >= 1.
      tied: share S (and theta, unless `tied_thresholds`) across stages.
      step_size: mu; `1 / ||D||_2^2` by default.
      param_dtype: parameter dtype; the dictionary's by default.
      tied_thresholds: share theta across stages; `tied` when None.
      scalar_threshold: one theta per stage (or in all) for all entries.

    Returns:
      The initialized encoder.
    """
    validation.check_positive('lam', lam)
    encoder, step_size = cls._from_iteration(
        dictionary, step_size, param_dtype, num_stages=num_stages, tied=tied,
        tied_thresholds=tied_thresholds, scalar_threshold=scalar_threshold)
    encoder.threshold[...] = jnp.full_like(encoder.threshold[...],
                                           lam * step_size)
    return encoder

  def _neuron_parameters(self) -> jax.Array:
    return self.threshold[...]

  def _neuron(self, u: jax.Array, threshold: jax.Array,
              settings: None) -> jax.Array:
    del settings
    # A learned threshold's value is a training outcome, not an argument.
    return ops.soft_threshold(u, threshold, validate=False)


class DeepL0Encoder(_UnrolledEncoder):
  """The Deep l0-Regularized Encoder (Fig. 3): unrolled IHT for problem (1).

  `z_{k+1} = theta * HELU_sigma((W x + S z_k) / theta)`: the learned hard
  threshold `h_theta` (eq. 7) written as two diagonal scaling layers around
  a unit hard threshold, so that theta receives gradients. In training mode
  the neuron is HELU_sigma (eq. 9) with the current `sigma` (set it with
  `set_helu_sigma`; `l0enc.train.fit` anneals it 0.2, 0.02, ...); in
  evaluation mode (`model.eval()`) it is the exact HELU.

  Attributes:
    input_weights: W, shape `(code_dim, signal_dim)`.
    recurrent_weights: S, shape `(code_dim, code_dim)` if tied, else
      `(num_stages - 1, code_dim, code_dim)` (stages 2..K).
    threshold: theta, shape `(code_dim,)` if tied, else `(num_stages,
      code_dim)`. Its sign does not matter (HELU is odd); it must not be 0.
    sigma: `HeluSigma`, a scalar in [0, 1).
    support_counts: with support selection, the number of entries of each
      stage that pass whatever the threshold; None without.
    threshold_floor: kappa >= 0 of our variant `theta_i >= kappa RMS(u)`
      (see the constructor); 0 for the paper's form.
    input_norm: None (the paper's form), 'fixed' or 'learned': see
      `INPUT_NORMS`. Then `input_weights` holds the direction V of each row
      of W, and `input_gain` its norm g (`FixedGain` or `nnx.Param`),
      shape `(code_dim,)`, initialized to the norms of the initial rows, so
      that the encoder starts as the paper's.
    deterministic: True in evaluation mode.
  """

  def __init__(self, signal_dim: int, code_dim: int, *, num_stages: int = 2,
               tied: bool = True, threshold: float = 0.1, sigma: float = 0.2,
               support_selection: bool = False,
               percent: float = SUPPORT_SELECTION_PERCENT,
               max_percent: float = SUPPORT_SELECTION_MAX_PERCENT,
               input_norm: str | None = None,
               threshold_floor: float = 0.0,
               param_dtype: Any = jnp.float32,
               input_init: nnx.Initializer = _scaled_normal(),
               recurrent_init: nnx.Initializer = _scaled_normal(),
               rngs: nnx.Rngs):
    """Builds a Deep l0-Regularized Encoder with random weights.

    Args:
      signal_dim: n, the length of the input signals.
      code_dim: p, the length of the codes.
      num_stages: K >= 1, the number of unrolled stages.
      tied: share S and theta across stages (True, the paper's setting).
      threshold: initial value of every theta_i, positive.
      sigma: initial HELU_sigma ramp width for training mode, in [0, 1).
      support_selection: let the largest entries of each stage pass whatever
        the threshold (`l0enc.ops.helu_ss`), `min(k * percent,
        max_percent)` % of them in stage k (`ops.support_selection_counts`).
      percent: growth of the selected percentage per stage.
      max_percent: its cap.
      input_norm: None, 'fixed' or 'learned' (`INPUT_NORMS`): our variant,
        W with rows of fixed or trained norm. The drive `W x` that the
        thresholds are compared with is then bounded by `g_i ||x||`, so
        training cannot densify the codes by growing W past theta.
      threshold_floor: kappa >= 0, our variant: each stage thresholds its
        pre-activation u (of one signal) at `max(|theta_i|, kappa RMS(u))`,
        `RMS(u) = ||u||_2 / sqrt(p)`, a threshold that scales with u's norm
        where theta is below it. Since at most `p / kappa^2` entries can
        have `u_i^2 >= kappa^2 mean(u^2)` (Markov), no stage gives more than
        `p / kappa^2` nonzeros whatever training does to W, S and theta;
        kappa = sqrt(2): at most half. 0 is the paper's form.
      param_dtype: dtype of the parameters (and of sigma).
      input_init: initializer of W, shape `(code_dim, signal_dim)` (with
        `input_norm`, of V; g starts at its row norms).
      recurrent_init: initializer of S.
      rngs: random streams; `rngs.params` initializes W and S.
    """
    if input_norm not in INPUT_NORMS:
      raise ValueError(f'input_norm must be one of {INPUT_NORMS}, got '
                       f'{input_norm!r}.')
    super().__init__(signal_dim, code_dim, num_stages=num_stages, tied=tied,
                     param_dtype=param_dtype, input_init=input_init,
                     recurrent_init=recurrent_init, rngs=rngs)
    validation.check_positive('threshold', threshold)
    _check_sigma(sigma)
    self.input_norm = input_norm
    validation.check_nonnegative('threshold_floor', threshold_floor)
    self.threshold_floor = float(threshold_floor)
    if input_norm is not None:
      norms = jnp.linalg.norm(self.input_weights[...], axis=-1)
      if validation.is_concrete(norms) and not np.all(np.asarray(norms) > 0):
        raise ValueError('input_norm needs every row of the initial W to be '
                         'nonzero (a zero row has no direction).')
      self.input_gain = (FixedGain if input_norm == 'fixed'
                         else nnx.Param)(norms)
    self.support_counts = (ops.support_selection_counts(
        self.num_stages, self.code_dim, percent=percent,
        max_percent=max_percent) if support_selection else None)
    self.threshold = nnx.Param(jnp.full(self._stage_shape + (code_dim,),
                                        threshold, param_dtype))
    self.sigma = HeluSigma(jnp.asarray(sigma, param_dtype))
    self.deterministic = False

  @classmethod
  def from_dictionary(cls, dictionary: jax.Array, *, lam: float,
                      num_stages: int = 2, tied: bool = True,
                      step_size: float | None = None, sigma: float = 0.2,
                      support_selection: bool = False,
                      percent: float = SUPPORT_SELECTION_PERCENT,
                      max_percent: float = SUPPORT_SELECTION_MAX_PERCENT,
                      input_norm: str | None = None,
                      threshold_floor: float = 0.0,
                      param_dtype: Any = None) -> 'DeepL0Encoder':
    """K stages of IHT on problem (1), `1/2||x - D a||^2 + lam ||a||_0` (eq. 8).

    `W = mu D^T`, `S = I - mu D^T D` and `theta = sqrt(2 lam mu)`
    (`l0enc.solvers.iht_threshold`). In evaluation mode the untrained encoder
    computes exactly K IHT iterations from zero. The paper's `theta =
    lam^0.5` (with mu = 1 and no 1/2 in the objective) is `lam = lam_paper / 2`
    here.

    Args:
      dictionary: D, shape `(signal_dim, code_dim)`.
      lam: the l0 weight, positive.
      num_stages: K >= 1.
      tied: share S and theta across stages.
      step_size: mu; `1 / ||D||_2^2` by default.
      sigma: initial HELU_sigma ramp width for training mode, in [0, 1).
      support_selection: as for the constructor (the untrained encoder then
        differs from IHT wherever a selected entry is below the threshold).
      percent: growth of the selected percentage per stage.
      max_percent: its cap.
      input_norm: None (the paper's form), 'fixed' or 'learned': our
        variant, rows of W normalized (see the constructor); the untrained
        encoder is the same IHT, since g starts at the norms of `mu D^T`'s
        rows (`mu ||d_i||`).
      threshold_floor: kappa of our variant (see the constructor): the
        untrained encoder is IHT wherever `sqrt(2 lam mu) >= kappa RMS(u)`.
      param_dtype: parameter dtype; the dictionary's by default.

    Returns:
      The initialized encoder.
    """
    validation.check_positive('lam', lam)
    encoder, step_size = cls._from_iteration(
        dictionary, step_size, param_dtype, num_stages=num_stages, tied=tied,
        sigma=sigma, support_selection=support_selection, percent=percent,
        max_percent=max_percent, input_norm=input_norm,
        threshold_floor=threshold_floor)
    encoder.threshold[...] = jnp.full_like(
        encoder.threshold[...], solvers.iht_threshold(lam, step_size))
    return encoder

  def effective_input_weights(self) -> jax.Array:
    """W: the stored one, or `diag(g) V / ||V||_rows` with `input_norm`."""
    directions = self.input_weights[...]
    if self.input_norm is None:
      return directions
    # Only V's direction matters: W's row norms are g, held fixed or
    # trained by the optimizer at theta's pace, not at that of W's entries.
    norms = jnp.linalg.norm(directions, axis=-1, keepdims=True)
    return self.input_gain[...][:, None] * directions / norms

  def _neuron_parameters(self) -> jax.Array:
    return self.threshold[...]

  def _stage_settings(self) -> jax.Array | None:
    if self.support_counts is None:
      return None
    return jnp.asarray(self.support_counts)

  def _neuron(self, u: jax.Array, threshold: jax.Array,
              count: jax.Array | None) -> jax.Array:
    sigma = 0.0 if self.deterministic else self.sigma[...]
    if self.threshold_floor:
      # HELU is odd, so theta HELU(u / theta) depends on |theta| only.
      rms = jnp.sqrt(jnp.mean(jnp.square(u), axis=-1, keepdims=True))
      threshold = jnp.maximum(jnp.abs(threshold), self.threshold_floor * rms)
    if count is None:
      return threshold * ops.helu(u / threshold, sigma)
    return threshold * ops.helu_ss(u / threshold, sigma, count,
                                   max(self.support_counts))


class DeepMSparseEncoder(_UnrolledEncoder):
  """The Deep M-Sparse Encoder (Fig. 4): unrolled IHT for problem (2).

  `z_{k+1} = h_M(W x + S z_k)`, where `h_M` is max-M pooling followed by
  unpooling (eqs. 10-11, `l0enc.ops.top_m`): every stage keeps the M entries
  of largest magnitude. W and S are trained.

  Attributes:
    input_weights: W, shape `(code_dim, signal_dim)`.
    recurrent_weights: S, shape `(code_dim, code_dim)` if tied, else
      `(num_stages - 1, code_dim, code_dim)` (stages 2..K).
    m: the number of nonzeros kept, `1 <= m <= code_dim`, or a tuple of
      one per stage.
  """

  def __init__(self, signal_dim: int, code_dim: int, *,
               m: int | Sequence[int], num_stages: int = 2, tied: bool = True,
               param_dtype: Any = jnp.float32,
               input_init: nnx.Initializer = _scaled_normal(),
               recurrent_init: nnx.Initializer = _scaled_normal(),
               rngs: nnx.Rngs):
    """Builds a Deep M-Sparse Encoder with random weights.

    Args:
      signal_dim: n, the length of the input signals.
      code_dim: p, the length of the codes.
      m: M, the number of nonzeros per code, `1 <= m <= code_dim`; or one
        M per stage (K ints), e.g. growing with the stage.
      num_stages: K >= 1, the number of unrolled stages.
      tied: share S across stages (True, the paper's setting).
      param_dtype: dtype of the parameters.
      input_init: initializer of W, shape `(code_dim, signal_dim)`.
      recurrent_init: initializer of S.
      rngs: random streams; `rngs.params` initializes W and S.
    """
    super().__init__(signal_dim, code_dim, num_stages=num_stages, tied=tied,
                     param_dtype=param_dtype, input_init=input_init,
                     recurrent_init=recurrent_init, rngs=rngs)
    if np.ndim(m) == 0:
      self.m = validation.check_int_in_range('m', m, 1, self.code_dim)
    else:
      if len(m) != self.num_stages:
        raise ValueError(f'm must be an int or have one entry per stage '
                         f'({self.num_stages}), got {len(m)}.')
      self.m = tuple(validation.check_int_in_range('m', each, 1,
                                                   self.code_dim)
                     for each in m)

  @classmethod
  def from_dictionary(cls, dictionary: jax.Array, *,
                      m: int | Sequence[int],
                      num_stages: int = 2, tied: bool = True,
                      step_size: float | None = None,
                      param_dtype: Any = None) -> 'DeepMSparseEncoder':
    """K stages of M-sparse IHT on problem (2) (eqs. 8, 10).

    `W = mu D^T` and `S = I - mu D^T D`; the untrained encoder computes
    exactly K iterations of `a <- h_M(a + mu D^T (x - D a))` from zero.

    Args:
      dictionary: D, shape `(signal_dim, code_dim)`.
      m: M, the number of nonzeros per code, `1 <= m <= code_dim`, or one
        per stage.
      num_stages: K >= 1.
      tied: share S across stages.
      step_size: mu; `1 / ||D||_2^2` by default.
      param_dtype: parameter dtype; the dictionary's by default.

    Returns:
      The initialized encoder.
    """
    encoder, _ = cls._from_iteration(dictionary, step_size, param_dtype, m=m,
                                     num_stages=num_stages, tied=tied)
    return encoder

  def _neuron_parameters(self) -> tuple[()]:
    return ()

  def _stage_settings(self) -> jax.Array | None:
    return None if isinstance(self.m, int) else jnp.asarray(self.m)

  def _neuron(self, u: jax.Array, neuron_params: tuple[()],
              m: jax.Array | None) -> jax.Array:
    del neuron_params
    if m is None:
      return ops.top_m(u, self.m)
    # M changes from stage to stage inside the scan: a traced M.
    return ops.top_m_upto(u, m, max(self.m))


class MLPEncoder(nnx.Module):
  """The paper's baseline encoder: a fully connected ReLU network.

  Hidden layers of width `hidden_dim` (p by default) with ReLU and dropout,
  then a linear layer to the codes. The default three hidden layers with
  dropout rates 0.1, 0.1, 0.5 are the paper's keep probabilities 0.9, 0.9,
  0.5. Dropout is active in training mode only (`model.eval()` disables it)
  and draws its masks from `rngs.dropout`. With `relu_output` the codes pass
  a ReLU too: `MLPEncoder(n, p, dropout_rates=(0.0,) * (K - 1),
  relu_output=True)` is the fully connected reference of the task tables,
  the unrolled encoders' layer sizes (n -> p, then K - 1 layers p -> p)
  with ReLU neurons and no recurrence or thresholds.
  """

  def __init__(self, signal_dim: int, code_dim: int, *,
               hidden_dim: int | None = None,
               dropout_rates: Sequence[float] = (0.1, 0.1, 0.5),
               relu_output: bool = False,
               param_dtype: Any = jnp.float32, rngs: nnx.Rngs):
    """Builds the baseline with one hidden layer per dropout rate.

    Args:
      signal_dim: n, the length of the input signals.
      code_dim: p, the length of the codes.
      hidden_dim: width of the hidden layers; `code_dim` by default.
      dropout_rates: the dropout rate (1 - keep probability) after each
        hidden layer, each in [0, 1); its length is the number of hidden
        layers.
      relu_output: apply a ReLU to the codes as well (nonnegative codes).
      param_dtype: dtype of the parameters.
      rngs: random streams: `params` for the weights, `dropout` for masks.
    """
    self.signal_dim = validation.check_int_in_range(
        'signal_dim', signal_dim, 1, 2**31 - 1)
    validation.check_int_in_range('code_dim', code_dim, 1, 2**31 - 1)
    hidden_dim = validation.check_int_in_range(
        'hidden_dim', code_dim if hidden_dim is None else hidden_dim, 1,
        2**31 - 1)
    for rate in dropout_rates:
      validation.check_nonnegative('dropout rate', rate)
      if rate >= 1:
        raise ValueError(f'dropout rates must be in [0, 1), got {rate}.')
    widths = [signal_dim] + [hidden_dim] * len(dropout_rates)
    self.hidden_layers = nnx.List([
        nnx.Linear(fan_in, fan_out, param_dtype=param_dtype, rngs=rngs)
        for fan_in, fan_out in zip(widths[:-1], widths[1:])])
    self.dropouts = nnx.List([nnx.Dropout(rate, rngs=rngs)
                              for rate in dropout_rates])
    self.output_layer = nnx.Linear(widths[-1], code_dim,
                                   param_dtype=param_dtype, rngs=rngs)
    self.relu_output = bool(relu_output)

  def __call__(self, x: jax.Array) -> jax.Array:
    """Encodes signals of shape `(..., signal_dim)` into `(..., code_dim)`."""
    x = _check_inputs(x, self.signal_dim)
    for layer, dropout in zip(self.hidden_layers, self.dropouts):
      x = dropout(jax.nn.relu(layer(x)))
    codes = self.output_layer(x)
    return jax.nn.relu(codes) if self.relu_output else codes
