"""Dictionary learning with unit-norm atoms, and the PCA basis of DDSE.

`learn_dictionary` is minibatch online dictionary learning (Mairal, Bach,
Ponce and Sapiro, "Online Learning for Matrix Factorization and Sparse
Coding", JMLR 2010): each step sparse-codes a random minibatch against the
current dictionary, folds the codes into running second-order statistics
`A ~ E[a a^T]`, `B ~ E[x a^T]`, and updates every atom by one pass of block
coordinate descent on `E ||x - D a||^2` given those statistics, then rescales
it to unit norm. `tight_frame` moves a dictionary to the nearest unit-norm
tight frame (the least spectral norm a unit-norm dictionary of its shape can
have). `pca_basis` gives the orthonormal `D_0` of DDSE (eq. 5 of
../shared/papers/deep-double-sparsity-encoder.txt).
"""

import functools
import logging
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from l0enc import adaptive_solvers
from l0enc import solvers
from l0enc import validation


class DictionaryState(NamedTuple):
  """State of online dictionary learning.

  Attributes:
    dictionary: current dictionary, shape `(n, p)`, unit-norm columns.
    code_covariance: running `A ~ E[a a^T]`, shape `(p, p)`.
    signal_code_covariance: running `B ~ E[x a^T]`, shape `(n, p)`.
    step: number of minibatches seen.
  """
  dictionary: jax.Array
  code_covariance: jax.Array
  signal_code_covariance: jax.Array
  step: jax.Array


class DictionaryResult(NamedTuple):
  """Output of `learn_dictionary`.

  Attributes:
    dictionary: the learned dictionary, shape `(n, p)`, unit-norm columns.
    objective: mean coding objective of the minibatches, one value per
      `log_every` steps (the mean over those steps), as a NumPy array.
  """
  dictionary: jax.Array
  objective: np.ndarray


def _unit_columns(matrix):
  norms = jnp.linalg.norm(matrix, axis=0, keepdims=True)
  return matrix / jnp.maximum(norms, jnp.finfo(matrix.dtype).tiny)


def _encode(batch, dictionary, lam, m, num_coding_iterations):
  """Sparse codes of a minibatch and their objective."""
  if m is not None:
    result = adaptive_solvers.omp(batch, dictionary, m)
  else:
    result = solvers.fista(batch, dictionary, lam,
                           num_iterations=num_coding_iterations)
  return result.codes, jnp.mean(result.objective)


def _update_atoms(dictionary, code_covariance, signal_code_covariance,
                  replacements):
  """One block-coordinate pass over the atoms (Mairal et al., Algorithm 2).

  `d_j <- d_j + (b_j - D a_j) / A_jj`, then unit norm; an atom no code has
  used yet (`A_jj` ~ 0) is replaced by a fresh signal, so it is not lost.
  """

  def update(j, dictionary):
    a_j = code_covariance[:, j]
    usage = a_j[j]
    updated = dictionary[:, j] + (signal_code_covariance[:, j] -
                                  solvers.matmul(dictionary, a_j)) / jnp.maximum(
                                      usage, jnp.finfo(usage.dtype).tiny)
    atom = jnp.where(usage > 1e-10, updated, replacements[:, j])
    atom = atom / jnp.maximum(jnp.linalg.norm(atom), 1e-12)
    return dictionary.at[:, j].set(atom)

  return jax.lax.fori_loop(0, dictionary.shape[1], update, dictionary)


@functools.partial(
    jax.jit, static_argnames=('lam', 'm', 'batch_size', 'num_coding_iterations',
                              'averaging_window'))
def _learn_chunk(state, keys, signals, *, lam, m, batch_size,
                 num_coding_iterations, averaging_window):
  """`len(keys)` dictionary-learning steps, scanned inside one jit."""

  def step(state, key):
    batch_key, replacement_key = jax.random.split(key)
    batch = signals[jax.random.randint(batch_key, (batch_size,), 0,
                                       signals.shape[0])]
    codes, objective = _encode(batch, state.dictionary, lam, m,
                               num_coding_iterations)
    # Running means over the last `averaging_window` minibatches (a plain
    # mean before that): old codes, computed with a worse dictionary, fade.
    step = state.step + 1
    keep = 1 - 1 / jnp.minimum(step, averaging_window).astype(batch.dtype)
    code_covariance = keep * state.code_covariance + (
        1 - keep) * solvers.matmul(codes.T, codes) / batch_size
    signal_code_covariance = keep * state.signal_code_covariance + (
        1 - keep) * solvers.matmul(batch.T, codes) / batch_size
    replacements = _unit_columns(signals[jax.random.randint(
        replacement_key, (state.dictionary.shape[1],), 0,
        signals.shape[0])].T)
    dictionary = _update_atoms(state.dictionary, code_covariance,
                               signal_code_covariance, replacements)
    return DictionaryState(dictionary, code_covariance,
                           signal_code_covariance, step), objective

  return jax.lax.scan(step, state, keys)


def mutual_coherence(dictionary: jax.Array) -> jax.Array:
  """`max_{i != j} |d_i^T d_j| / (||d_i|| ||d_j||)`, the largest atom overlap.

  Args:
    dictionary: shape `(n, p)` with `p >= 2` nonzero columns.

  Returns:
    A scalar in [0, 1].
  """
  if jnp.ndim(dictionary) != 2 or jnp.shape(dictionary)[1] < 2:
    raise ValueError('dictionary must have shape (n, p) with p >= 2, got '
                     f'{jnp.shape(dictionary)}.')
  atoms = _unit_columns(jnp.asarray(dictionary))
  gram = jnp.abs(atoms.T @ atoms)
  return jnp.max(jnp.where(jnp.eye(gram.shape[0], dtype=bool), 0, gram))


def tight_frame(dictionary: jax.Array, num_iterations: int = 100
                ) -> jax.Array:
  """The unit-norm dictionary nearest to `dictionary` whose frame is tight.

  Alternating projections (Tropp, Dhillon, Heath and Strohmer, "Designing
  structured tight frames via an alternating projection method", IEEE
  Trans. Inf. Theory 2005): the nearest `p/n`-tight frame to `D = U S V^T`
  in Frobenius norm is `sqrt(p/n) U V^T` (their Theorem 2), the nearest
  unit-norm dictionary rescales each column; the two steps alternate,
  starting and ending with unit-norm columns. A tight frame has
  `D D^T = (p/n) I`, so `||D||_2^2 = p/n`, the least any unit-norm
  dictionary of that shape can have: IHT's step `1/||D||_2^2` is then as
  large as it can be. With `p <= n` the target is orthonormal columns
  (`U V^T`), and IHT solves problem (1) in one step.

  Args:
    dictionary: shape `(n, p)`, nonzero columns.
    num_iterations: pairs of projections, at least 1.

  Returns:
    Shape `(n, p)`, unit-norm columns, as tight as `num_iterations` allow.
  """
  dictionary = validation.as_float_array('dictionary', dictionary)
  if jnp.ndim(dictionary) != 2:
    raise ValueError('dictionary must have shape (n, p), got '
                     f'{jnp.shape(dictionary)}.')
  validation.check_finite('dictionary', dictionary)
  num_iterations = validation.check_int_in_range(
      'num_iterations', num_iterations, 1, 2**31 - 1)
  return _tight_frame(jnp.asarray(dictionary), num_iterations)


@functools.partial(jax.jit, static_argnames='num_iterations')
def _tight_frame(dictionary, num_iterations):
  n, p = dictionary.shape
  scale = jnp.sqrt(jnp.asarray(max(p / n, 1.0), dictionary.dtype))

  def project(atoms, _):
    left, _, right = jnp.linalg.svd(atoms, full_matrices=False)
    return _unit_columns(scale * left @ right), None

  return jax.lax.scan(project, _unit_columns(dictionary), None,
                      length=num_iterations)[0]


def init_dictionary(key: jax.Array, signals: jax.Array,
                    num_atoms: int) -> jax.Array:
  """A dictionary of `num_atoms` random training signals, unit-normed.

  Args:
    key: PRNG key.
    signals: shape `(N, n)`.
    num_atoms: `p`.

  Returns:
    Shape `(n, p)`; columns are signals drawn without replacement when
    `p <= N` (nonzero signals assumed).
  """
  indices = jax.random.choice(key, signals.shape[0], (num_atoms,),
                              replace=num_atoms > signals.shape[0])
  return _unit_columns(jnp.asarray(signals)[indices].T)


def learn_dictionary(
    key: jax.Array,
    signals: jax.Array,
    num_atoms: int,
    *,
    lam: float | None = None,
    m: int | None = None,
    num_steps: int = 1000,
    batch_size: int = 256,
    num_coding_iterations: int = 100,
    averaging_window: int = 20,
    init: jax.Array | None = None,
    log_every: int = 100,
    callback: Callable[[int, float], None] | None = None,
) -> DictionaryResult:
  """Learns a dictionary with unit-norm atoms from data.

  Minimizes `E_x min_a 1/2 ||x - D a||^2 + lam ||a||_1` (l1 coding by FISTA
  with `num_coding_iterations` steps) or `E_x min_{||a||_0 <= m} ||x - D a||^2`
  (coding by OMP) over `D` with unit-norm columns, by minibatch online
  learning (see the module docstring).

  Args:
    key: PRNG key (initialization, minibatch sampling).
    signals: training signals, shape `(N, n)`.
    num_atoms: dictionary size `p`.
    lam: l1 weight of the coding step. Give exactly one of lam and m.
    m: sparsity of the OMP coding step.
    num_steps: number of minibatches.
    batch_size: signals per minibatch, drawn with replacement.
    num_coding_iterations: FISTA iterations per coding step.
    averaging_window: minibatches the running statistics average over.
    init: initial dictionary `(n, p)`; random signals when None.
    log_every: steps between progress reports (log line and `callback`).
    callback: called as `callback(step, mean_objective)` every `log_every`.

  Returns:
    `DictionaryResult(dictionary, objective)`.
  """
  signals = validation.as_float_array('signals', signals)
  if jnp.ndim(signals) != 2:
    raise ValueError(f'signals must have shape (N, n), got '
                     f'{jnp.shape(signals)}.')
  validation.check_finite('signals', signals)
  num_atoms = validation.check_int_in_range('num_atoms', num_atoms, 1, 2**31)
  if (lam is None) == (m is None):
    raise ValueError(f'Give exactly one of lam and m; got lam={lam!r}, m={m!r}.')
  validation.check_positive('lam', lam)
  if m is not None:
    m = validation.check_int_in_range(
        f'm (at most min(n, p) = {min(signals.shape[1], num_atoms)})', m, 1,
        min(signals.shape[1], num_atoms))
  for name, value in [('num_steps', num_steps), ('batch_size', batch_size),
                      ('num_coding_iterations', num_coding_iterations),
                      ('averaging_window', averaging_window),
                      ('log_every', log_every)]:
    validation.check_int_in_range(name, value, 1, 2**31 - 1)
  if init is not None:
    init = validation.as_float_array('init', init)
    validation.check_finite('init', init)
  if init is not None and jnp.shape(init) != (signals.shape[1], num_atoms):
    raise ValueError(f'init must have shape {(signals.shape[1], num_atoms)}, '
                     f'got {jnp.shape(init)}.')

  init_key, key = jax.random.split(key)
  dictionary = (init_dictionary(init_key, signals, num_atoms) if init is None
                else _unit_columns(jnp.asarray(init, signals.dtype)))
  state = DictionaryState(
      dictionary, jnp.zeros((num_atoms, num_atoms), signals.dtype),
      jnp.zeros((signals.shape[1], num_atoms), signals.dtype),
      jnp.zeros((), jnp.int32))
  history = []
  for start in range(0, num_steps, log_every):
    chunk = min(log_every, num_steps - start)
    state, objectives = _learn_chunk(
        state, jax.random.split(jax.random.fold_in(key, start), chunk), signals,
        lam=lam, m=m, batch_size=batch_size,
        num_coding_iterations=num_coding_iterations,
        averaging_window=averaging_window)
    history.append(float(jnp.mean(objectives)))
    logging.info('dictionary learning: step %d/%d, objective %.5g',
                 start + chunk, num_steps, history[-1])
    if callback is not None:
      callback(start + chunk, history[-1])
  return DictionaryResult(state.dictionary, np.asarray(history))


class PCABasis(NamedTuple):
  """PCA of the training data: DDSE's `D_0` (eq. 5).

  Attributes:
    mean: training mean, shape `(n,)`.
    components: orthonormal eigenvectors of the covariance as columns, shape
      `(n, n)`, in decreasing order of variance; each column's largest-
      magnitude entry is positive, so the basis is deterministic.
    variances: the covariance eigenvalues, shape `(n,)`, decreasing.
  """
  mean: jax.Array
  components: jax.Array
  variances: jax.Array


@jax.jit
def _pca_basis(signals):
  mean = jnp.mean(signals, axis=0)
  centered = signals - mean
  covariance = solvers.matmul(centered.T, centered) / max(signals.shape[0] - 1, 1)
  variances, components = jnp.linalg.eigh(covariance)
  variances, components = variances[::-1], components[:, ::-1]
  pivot = jnp.take_along_axis(
      components, jnp.argmax(jnp.abs(components), axis=0)[None], axis=0)
  return PCABasis(mean, components * jnp.sign(pivot), variances)


def pca_basis(signals: jax.Array) -> PCABasis:
  """The full PCA basis of `signals` (shape `(N, n)`), after mean removal.

  DDSE chooses `D_0` as the eigenvector matrix of the covariance of the
  zero-mean training data, so that `D_0^T D_0 = I` drops out of the
  recurrence and `D_0^T x` is the PCA projection (eq. 5).
  """
  signals = validation.as_float_array('signals', signals)
  if jnp.ndim(signals) != 2 or signals.shape[0] < 2:
    raise ValueError(f'signals must have shape (N >= 2, n), got '
                     f'{jnp.shape(signals)}.')
  validation.check_finite('signals', signals)
  return _pca_basis(jnp.asarray(signals))


def pca_project(signals: jax.Array, basis: PCABasis) -> jax.Array:
  """`x_pca = D_0^T (x - mean)` for signals of shape `(..., n)` (eq. 5)."""
  signals = validation.as_float_array('signals', signals)
  if jnp.shape(signals)[-1] != basis.mean.shape[0]:
    raise ValueError(f'signals must have last dimension {basis.mean.shape[0]}, '
                     f'got shape {jnp.shape(signals)}.')
  return solvers.matmul(signals - basis.mean, basis.components)
