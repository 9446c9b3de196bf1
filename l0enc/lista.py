"""The LISTA family in the coupled form: LISTA-CP(SS) and ALISTA (Flax NNX).

Chen et al. (NeurIPS 2018, "Theoretical linear convergence of unfolded ISTA
and its practical weights and thresholds") showed that the two matrices of
LISTA's stage k can be coupled, `S_k = I - W_k D`, without loss, which gives
the LISTA-CP stage

    z_k = eta_k(z_{k-1} + W_k (x - D z_{k-1})),   z_0 = 0,         (LISTA-CP)

with one learned `p x n` matrix per stage instead of an `n x p` and a
`p x p` one (W_k here is the transpose of the papers' `W^k` of shape n x p).
Liu et al. (ICLR 2019, "ALISTA: analytic weights are as good as learned
weights in LISTA") then fixed `W_k = gamma_k W` with W computed from D alone
by coherence minimization (`analytic_weight`), leaving two scalars per stage
to learn:

    z_k = eta_k(z_{k-1} + gamma_k W (x - D z_{k-1})).                (ALISTA)

`shared_lista` builds the field's LISTA baseline in the same conventions:
one B and one S for all stages and a scalar threshold per stage.

Both papers add support selection ("SS", `l0enc.ops.soft_threshold_ss`):
the largest p_k % of each stage's entries pass without shrinkage, p_k
growing with k (`l0enc.ops.support_selection_counts`).

The neuron eta_k is selected by `neuron`:

  'soft'   the soft threshold with a learned scalar threshold theta_k (the
           papers'), with support selection if `support_selection`;
  'helu'   our learned hard threshold `theta_k HELU_sigma(u / theta_k)` of the
           Deep l0 encoder (Wang et al. 2016, eqs. 7, 9), with support
           selection (`l0enc.ops.helu_ss`) if `support_selection`;
  'top_m'  the M-sparse neuron `h_{M_k}` of the Deep M-Sparse encoder
           (eqs. 10-11) with M per stage (`m`), no threshold.

so the same two parameterizations give the coupled and analytic forms of our
l0 encoders. All stages run in one `lax.scan`; `__call__(x,
return_all_stages=True)` returns every stage's codes, `num_stages=k` runs
the first k only, and `parameter_stages()` tells `l0enc.stagewise` which
stage each parameter belongs to. D (and ALISTA's W) are model state of type
`FixedMatrix`, not `nnx.Param`: no optimizer touches them.
"""

from collections.abc import Sequence
from typing import Any

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from l0enc import models
from l0enc import ops
from l0enc import solvers
from l0enc import validation

SOFT = 'soft'
HELU = 'helu'
TOP_M = 'top_m'
NEURONS = (SOFT, HELU, TOP_M)
# The LISTA-CPSS and ALISTA codes' settings for the 250 x 500 problem.
PAPER_LAM = 0.4
PAPER_PERCENT = models.SUPPORT_SELECTION_PERCENT  # 1.2 % more per stage,
PAPER_MAX_PERCENT = models.SUPPORT_SELECTION_MAX_PERCENT  # up to 13 %.
# Their step size is 1 / (1.001 ||D||_2^2): a hair below 1 / L.
_SCALE_SLACK = 1.001


class FixedMatrix(nnx.Variable):
  """A matrix the model uses but does not train: D, or ALISTA's W."""


def analytic_weight(dictionary: jax.Array) -> jax.Array:
  """ALISTA's analytic weight: min ||W^T D||_F^2 s.t. diag(W^T D) = 1.

  Liu et al. (2019), eq. (16) with the Frobenius norm (their Appendix E.1
  and `CalculateW.m` solve it by projected gradient descent from W = D).
  The problem separates over the columns w_i of W: minimize
  `w^T (D D^T) w` subject to `w^T d_i = 1`, whose solution is

      w_i = G^{-1} d_i / (d_i^T G^{-1} d_i),   G = D D^T,

  so we compute it in closed form (one n x n solve); it is the point the
  projected gradient converges to. D must have full row rank (G invertible),
  as a Gaussian 250 x 500 matrix does. Since D itself is feasible when its
  columns have unit norm, the off-diagonal energy `||W^T D - I||_F^2` is at
  most that of `D^T D - I`.

  Args:
    dictionary: D, shape `(n, p)` with `n <= p`, full row rank.

  Returns:
    W, shape `(n, p)`, with `diag(W^T D) = 1`.
  """
  dictionary = _check_dictionary(dictionary)
  gram = dictionary @ dictionary.T
  solved = jnp.linalg.solve(gram, dictionary)  # G^{-1} d_i as columns.
  return solved / jnp.sum(solved * dictionary, axis=0, keepdims=True)


def mutual_coherence(weight: jax.Array, dictionary: jax.Array) -> jax.Array:
  """`max_{i != j} |w_i^T d_j|`, the generalized coherence of ALISTA (eq. 15).

  `mutual_coherence(D, D)` is the usual mutual coherence of D (for unit-norm
  columns).

  Args:
    weight: W, shape `(n, p)`.
    dictionary: D, shape `(n, p)`.

  Returns:
    A scalar.
  """
  products = jnp.abs(weight.T @ dictionary)
  return jnp.max(products - jnp.diag(jnp.diag(products)))


def _check_dictionary(dictionary: jax.Array) -> jax.Array:
  dictionary = jnp.asarray(dictionary)
  if dictionary.ndim != 2:
    raise ValueError('dictionary must have shape (signal_dim, code_dim), '
                     f'got {dictionary.shape}.')
  validation.check_finite('dictionary', dictionary)
  return dictionary


def paper_step_size(dictionary: jax.Array) -> float:
  """`1 / (1.001 ||D||_2^2)`, the step of the papers' initializations."""
  return float(1.0 / (_SCALE_SLACK * solvers.lipschitz_constant(dictionary)))


class _CoupledEncoder(nnx.Module):
  """Shared body: `z_k = eta_k(z_{k-1} + gain_k(x - D z_{k-1}))` from 0.

  Subclasses set the per-stage gain parameters and `_gain(residual,
  params)`.
  """

  def __init__(self, dictionary: jax.Array, *, num_stages: int, neuron: str,
               threshold: float | None, support_selection: bool,
               percent: float, max_percent: float,
               m: int | Sequence[int] | None, sigma: float,
               param_dtype: Any):
    dictionary = _check_dictionary(dictionary)
    param_dtype = dictionary.dtype if param_dtype is None else param_dtype
    self.signal_dim, self.code_dim = dictionary.shape
    self.num_stages = validation.check_int_in_range('num_stages', num_stages,
                                                    1, 2**31 - 1)
    if neuron not in NEURONS:
      raise ValueError(f'neuron must be one of {NEURONS}, got {neuron!r}.')
    self.neuron = neuron
    # A copy: training steps donate the model state, which must not delete
    # the caller's dictionary.
    self.dictionary = FixedMatrix(jnp.array(dictionary, param_dtype,
                                            copy=True))
    if neuron == TOP_M:
      if m is None:
        raise ValueError("neuron='top_m' needs m (an int or one per stage).")
      counts = (m,) * self.num_stages if np.ndim(m) == 0 else tuple(m)
      if len(counts) != self.num_stages:
        raise ValueError(f'm must have one entry per stage ({num_stages}), '
                         f'got {len(counts)}.')
      self.counts = tuple(validation.check_int_in_range('m', c, 1,
                                                        self.code_dim)
                          for c in counts)
    else:
      if m is not None:
        raise ValueError(f"m is only for neuron='top_m', not {neuron!r}.")
      self.counts = (ops.support_selection_counts(
          self.num_stages, self.code_dim, percent=percent,
          max_percent=max_percent) if support_selection else None)
      validation.check_positive('threshold', threshold)
      self.threshold = nnx.Param(jnp.full((self.num_stages,), threshold,
                                          param_dtype))
    self.support_selection = bool(support_selection)
    if neuron == HELU:
      models._check_sigma(sigma)  # pylint: disable=protected-access
      self.sigma = models.HeluSigma(jnp.asarray(sigma, param_dtype))
    self.deterministic = False

  def _gain_parameters(self) -> Any:
    raise NotImplementedError

  def _gain(self, residual: jax.Array, params: Any) -> jax.Array:
    raise NotImplementedError

  def _eta(self, u: jax.Array, threshold: jax.Array | None,
           count: jax.Array | None) -> jax.Array:
    max_count = 0 if self.counts is None else max(self.counts)
    if self.neuron == TOP_M:
      return ops.top_m_upto(u, count, max_count)
    if self.neuron == SOFT:
      if self.counts is None:
        return ops.soft_threshold(u, threshold)
      return ops.soft_threshold_ss(u, threshold, count, max_count)
    sigma = 0.0 if self.deterministic else self.sigma[...]
    scaled = u / threshold
    if self.counts is None:
      return threshold * ops.helu(scaled, sigma)
    return threshold * ops.helu_ss(scaled, sigma, count, max_count)

  def __call__(self, x: jax.Array, *, return_all_stages: bool = False,
               num_stages: int | None = None) -> jax.Array:
    """Encodes signals by the stages of the class docstring.

    Args:
      x: signals, shape `(..., signal_dim)`.
      return_all_stages: return every stage's codes, stacked along a new
        leading axis (the scan's outputs).
      num_stages: run only the first `k` stages (a Python int).

    Returns:
      Codes `(..., code_dim)`, or `(k, ..., code_dim)` with
      `return_all_stages`.
    """
    # pylint: disable-next=protected-access
    x = models._check_inputs(x, self.signal_dim)
    num_stages = models.check_num_stages(num_stages, self.num_stages)
    dictionary = self.dictionary[...]
    per_stage = (self._gain_parameters(),
                 None if self.neuron == TOP_M else self.threshold[...],
                 None if self.counts is None else jnp.asarray(self.counts))
    per_stage = jax.tree.map(lambda a: a[:num_stages], per_stage)

    def stage(codes, inputs):
      gain_params, threshold, count = inputs
      residual = x - codes @ dictionary.T
      codes = self._eta(codes + self._gain(residual, gain_params), threshold,
                        count)
      return codes, codes if return_all_stages else None

    codes = jnp.zeros(x.shape[:-1] + (self.code_dim,), x.dtype)
    codes, all_codes = jax.lax.scan(stage, codes, per_stage,
                                    length=num_stages)
    return all_codes if return_all_stages else codes

  def parameter_stages(self) -> dict[str, Any]:
    """Every parameter has one slice per stage: `{name: [1, ..., K]}`."""
    stages = np.arange(1, self.num_stages + 1)
    return {name: stages for name, value in vars(self).items()
            if isinstance(value, nnx.Param)}


class LISTACP(_CoupledEncoder):
  """LISTA-CP, and LISTA-CPSS with `support_selection=True` (Chen et al. 2018).

  `z_k = eta_k(z_{k-1} + W_k (x - D z_{k-1}))` with untied `W_k` (`p x n`),
  or one W for all stages (`tied=True`: the default of the LISTA-CPSS and
  ALISTA codes, `untied=False`, whose plots are of this form), and scalar
  thresholds theta_k. Initialization (the paper's code): every
  `W_k = D^T / (1.001 ||D||_2^2)` and `theta_k = lam / (1.001 ||D||_2^2)`,
  i.e. K ISTA iterations with step 1/(1.001 L); with `neuron='helu'` theta_k
  is the IHT threshold `sqrt(2 lam mu)` instead (K IHT iterations in
  evaluation mode).

  Attributes:
    weights: W_1..W_K, shape `(K, code_dim, signal_dim)`, or the shared W,
      `(code_dim, signal_dim)`, if tied (a parameter of stage 1).
    threshold: theta_1..theta_K, shape `(K,)` (not with 'top_m').
    dictionary: D, a `FixedMatrix`.
  """

  def __init__(self, dictionary: jax.Array, *, num_stages: int = 16,
               lam: float = PAPER_LAM, neuron: str = SOFT,
               support_selection: bool = False,
               percent: float = PAPER_PERCENT,
               max_percent: float = PAPER_MAX_PERCENT,
               m: int | Sequence[int] | None = None, sigma: float = 0.2,
               tied: bool = False, param_dtype: Any = None):
    """Builds the encoder from the dictionary, initialized as ISTA / IHT.

    Args:
      dictionary: D, shape `(signal_dim, code_dim)`.
      num_stages: K >= 1.
      lam: the l1 weight (soft) or l0 weight (helu) of the initialization,
        positive.
      neuron: 'soft', 'helu' or 'top_m' (see the module docstring).
      support_selection: support selection in the soft or helu neuron.
      percent: growth of the selected percentage per stage.
      max_percent: its cap.
      m: M per stage (an int or K ints), with 'top_m' only.
      sigma: initial HELU_sigma ramp width, with 'helu'.
      tied: one W shared by all stages instead of one per stage.
      param_dtype: parameter dtype; the dictionary's by default.
    """
    validation.check_positive('lam', lam)
    validation.check_choice('tied', tied, (False, True))
    step_size = paper_step_size(_check_dictionary(dictionary))
    threshold = (solvers.iht_threshold(lam, step_size) if neuron == HELU
                 else lam * step_size)
    super().__init__(dictionary, num_stages=num_stages, neuron=neuron,
                     threshold=float(threshold),
                     support_selection=support_selection, percent=percent,
                     max_percent=max_percent, m=m, sigma=sigma,
                     param_dtype=param_dtype)
    self.tied = tied
    weight = step_size * self.dictionary[...].T
    self.weights = nnx.Param(weight if tied else jnp.broadcast_to(
        weight, (self.num_stages, self.code_dim, self.signal_dim)))

  def _gain_parameters(self) -> jax.Array | None:
    # A tied W is not scanned over: each stage reads the one matrix.
    return None if self.tied else self.weights[...]

  def _gain(self, residual: jax.Array, weights: jax.Array | None
            ) -> jax.Array:
    return residual @ (self.weights[...] if weights is None else weights).T

  def parameter_stages(self) -> dict[str, Any]:
    """A slice per stage (`[1, ..., K]`); a tied W is stage 1's."""
    stages = super().parameter_stages()
    if self.tied:
      stages['weights'] = 1
    return stages


class ALISTA(_CoupledEncoder):
  """Analytic LISTA (Liu et al. 2019): `W_k = gamma_k W`, W from D alone.

  `z_k = eta_k(z_{k-1} + gamma_k W^T (x - D z_{k-1}))` with the analytic
  weight `W = analytic_weight(D)` fixed and only the step sizes gamma_k and
  thresholds theta_k learned (2 K parameters). Initialization (the paper's
  code): `gamma_k = 1`, `theta_k = lam / (1.001 ||D||_2^2)`. For 'helu' the
  thresholds start at `sqrt(2 lam gamma)`, the IHT threshold of a step of
  size gamma (the step this iteration takes along W), so that the untrained
  encoder is IHT with the analytic weight. Support selection is on by
  default, as in the paper.

  Attributes:
    step_size: gamma_1..gamma_K, shape `(K,)`.
    threshold: theta_1..theta_K, shape `(K,)` (not with 'top_m').
    weight: W^T, shape `(code_dim, signal_dim)`, a `FixedMatrix`.
    dictionary: D, a `FixedMatrix`.
  """

  def __init__(self, dictionary: jax.Array, *, num_stages: int = 16,
               lam: float = PAPER_LAM, neuron: str = SOFT,
               support_selection: bool = True,
               percent: float = PAPER_PERCENT,
               max_percent: float = PAPER_MAX_PERCENT,
               m: int | Sequence[int] | None = None, sigma: float = 0.2,
               step_size: float = 1.0, param_dtype: Any = None):
    """Builds ALISTA from the dictionary.

    Args:
      dictionary: D, shape `(signal_dim, code_dim)`, full row rank.
      num_stages: K >= 1.
      lam: sets the initial thresholds (see the class docstring), positive.
      neuron: 'soft', 'helu' or 'top_m' (see the module docstring).
      support_selection: support selection in the soft or helu neuron.
      percent: growth of the selected percentage per stage.
      max_percent: its cap.
      m: M per stage (an int or K ints), with 'top_m' only.
      sigma: initial HELU_sigma ramp width, with 'helu'.
      step_size: the initial gamma_k, positive (the paper's 1).
      param_dtype: parameter dtype; the dictionary's by default.
    """
    validation.check_positive('lam', lam)
    validation.check_positive('step_size', step_size)
    mu = paper_step_size(_check_dictionary(dictionary))
    threshold = (solvers.iht_threshold(lam, step_size) if neuron == HELU
                 else lam * mu)
    super().__init__(dictionary, num_stages=num_stages, neuron=neuron,
                     threshold=float(threshold),
                     support_selection=support_selection, percent=percent,
                     max_percent=max_percent, m=m, sigma=sigma,
                     param_dtype=param_dtype)
    self.weight = FixedMatrix(analytic_weight(self.dictionary[...]).T)
    self.step_size = nnx.Param(jnp.full((self.num_stages,), step_size,
                                        self.dictionary[...].dtype))

  def _gain_parameters(self) -> jax.Array:
    return self.step_size[...]

  def _gain(self, residual: jax.Array, step_size: jax.Array) -> jax.Array:
    return step_size * (residual @ self.weight[...].T)


def shared_lista(dictionary: jax.Array, *, num_stages: int = 16,
                 lam: float = PAPER_LAM, step_size: float | None = None,
                 param_dtype: Any = None) -> models.LISTA:
  """LISTA with one B and one S for all stages and a threshold per stage.

  The form of the field's LISTA baseline (Borgerding et al.'s
  `build_LISTA`, on which the LISTA-CPSS and ALISTA codes build, refuses
  untied weights):

      z_1 = s_{theta_1}(B x),   z_k = s_{theta_k}(B x + S z_{k-1}),

  with the soft threshold s and a scalar theta_k per stage. Unlike
  `l0enc.models.LISTA(tied=False)`, a stage added by stage-wise training
  brings only its threshold, so it starts from the trained B and S instead
  of pairing an untrained `S_k = I - mu D^T D` with a trained B.

  `B = mu D^T`, `S = I - mu D^T D`, `theta_k = lam mu`: the untrained
  encoder computes K ISTA iterations from zero.

  Args:
    dictionary: D, shape `(signal_dim, code_dim)`.
    num_stages: K >= 1.
    lam: the l1 weight of the initial thresholds, positive.
    step_size: mu; `paper_step_size(D)` by default.
    param_dtype: parameter dtype; the dictionary's by default.

  Returns:
    A `models.LISTA` with tied S, untied scalar thresholds: `input_weights`
    B `(code_dim, signal_dim)`, `recurrent_weights` S `(code_dim,
    code_dim)`, `threshold` `(num_stages,)`.
  """
  dictionary = _check_dictionary(dictionary)
  step_size = (paper_step_size(dictionary) if step_size is None
               else step_size)
  return models.LISTA.from_dictionary(
      dictionary, lam=lam, num_stages=num_stages, tied=True,
      step_size=step_size, param_dtype=param_dtype, tied_thresholds=False,
      scalar_threshold=True)
