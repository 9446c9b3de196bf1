"""Tests of the sparse projection transformation (DDSE PGD, eqs. 6-8)."""

import chex
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from l0enc import transforms
from references import np_top_m

CONSTRAINTS = {'encoder/stacked_rows': ('rows', 2),
               'encoder/columns': ('cols', 3)}


def np_project(w, constraint):
  """Keeps the s largest magnitudes per row / column (ties to lower index)."""
  axis, s = constraint
  w = np.asarray(w)
  if axis == 'cols':
    return np_project(np.swapaxes(w, -1, -2), ('rows', s)).swapaxes(-1, -2)
  return np_top_m(w, s)


def _params(seed=0):
  rng = np.random.default_rng(seed)
  return {'encoder': {'stacked_rows': rng.normal(size=(2, 5, 7)),
                      'columns': rng.normal(size=(6, 4))},
          'bias': rng.normal(size=(4,))}


def _as_jax(tree):
  return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), tree)


def _gradients(num_steps, seed=1):
  rng = np.random.default_rng(seed)
  return [jax.tree.map(lambda a: rng.normal(size=a.shape), _params())
          for _ in range(num_steps)]


@pytest.mark.parametrize('every_n_steps', [1, 3, 5])
def test_projects_exactly_every_nth_update_under_jit(every_n_steps):
  learning_rate, momentum, num_steps = 0.1, 0.9, 11
  tx = optax.chain(optax.sgd(learning_rate, momentum=momentum),
                   transforms.sparse_projection(CONSTRAINTS, every_n_steps))
  params = _as_jax(_params())
  state = tx.init(params)

  @jax.jit
  def step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  # Hand-computed reference: momentum SGD, then P after updates N, 2N, ...
  reference = _params()
  trace = jax.tree.map(np.zeros_like, reference)
  for t, grads in enumerate(_gradients(num_steps), start=1):
    params, state = step(params, state, _as_jax(grads))
    trace = jax.tree.map(lambda m, g: g + momentum * m, trace, grads)
    reference = jax.tree.map(lambda p, m: p - learning_rate * m, reference,
                             trace)
    projected = t % every_n_steps == 0
    if projected:
      reference['encoder'] = {
          name: np_project(w, CONSTRAINTS[f'encoder/{name}'])
          for name, w in reference['encoder'].items()}
    chex.assert_trees_all_close(params, reference, rtol=1e-5, atol=1e-5)
    assert int(state[1].steps_since_projection) == t % every_n_steps
    feasible = all(check.feasible for check in
                   transforms.check_sparsity(params, CONSTRAINTS).values())
    # Between projections the unconstrained steps refill the rows.
    assert feasible == projected
    if projected:  # Zeroed entries are exactly 0, not rounding residue.
      for name, w in params['encoder'].items():
        np.testing.assert_array_equal(
            np.asarray(w) == 0, reference['encoder'][name] == 0)
  assert step._cache_size() == 1  # The step decision never recompiles.


def test_unconstrained_parameters_pass_through_unchanged():
  grads = _as_jax(_gradients(1)[0])
  params = _as_jax(_params())
  plain = optax.sgd(0.1)
  projected = optax.chain(plain, transforms.sparse_projection(CONSTRAINTS, 1))
  plain_updates, _ = plain.update(grads, plain.init(params), params)
  updates, _ = projected.update(grads, projected.init(params), params)
  chex.assert_trees_all_equal(updates['bias'], plain_updates['bias'])
  assert not np.allclose(updates['encoder']['columns'],
                         plain_updates['encoder']['columns'])


def test_project_params_is_idempotent_and_keeps_feasible_params():
  params = _as_jax(_params())
  once = transforms.project_params(params, CONSTRAINTS)
  chex.assert_trees_all_equal(transforms.project_params(once, CONSTRAINTS),
                              once)
  chex.assert_trees_all_equal(once['bias'], params['bias'])
  # A projection step with a zero gradient leaves feasible params alone.
  tx = transforms.sparse_projection(CONSTRAINTS, every_n_steps=1)
  zeros = jax.tree.map(jnp.zeros_like, once)
  updates, _ = tx.update(zeros, tx.init(once), once)
  chex.assert_trees_all_equal(optax.apply_updates(once, updates), once)


def test_check_sparsity_reports_max_nonzeros_per_row_and_column():
  w = jnp.asarray([[1., 0., 2.], [0., 0., 3.], [4., 0., 5.], [0., 0., 6.]])
  checks = transforms.check_sparsity(
      {'a': w, 'b': w}, {'a': ('rows', 1), 'b': ('cols', 2)})
  assert checks['a'] == transforms.SparsityCheck(
      transforms.SparsityConstraint('rows', 1), 2)
  assert not checks['a'].feasible
  assert checks['b'].max_nonzeros == 4 and not checks['b'].feasible


class _Model(nnx.Module):

  def __init__(self):
    rng = np.random.default_rng(0)
    self.weights = nnx.Param(jnp.asarray(rng.normal(size=(3, 6)), jnp.float32))
    self.layers = nnx.List([nnx.Linear(6, 6, rngs=nnx.Rngs(0))])

  def __call__(self, x):
    return self.layers[0](x @ self.weights[...].T @ self.weights[...])


@pytest.mark.parametrize('constraints', [
    {'weights': ('rows', 2), 'layers/0/kernel': ('cols', 1)},
    lambda path: {'weights': ('rows', 2),
                  'layers/0/kernel': ('cols', 1)}.get(path)])
def test_selects_by_path_in_nnx_state_and_with_nnx_optimizer(constraints):
  model = _Model()
  # Paths are the same for a state of Variables and for a pure state.
  nnx.update(model, transforms.project_params(nnx.state(model, nnx.Param),
                                              constraints))
  checks = transforms.check_sparsity(nnx.state(model, nnx.Param), constraints)
  assert sorted(checks) == ['layers/0/kernel', 'weights']
  assert all(check.feasible for check in checks.values())
  bias = model.layers[0].bias[...]
  optimizer = nnx.Optimizer(
      model, optax.chain(optax.sgd(0.5),
                         transforms.sparse_projection(constraints, 2)),
      wrt=nnx.Param)

  @nnx.jit
  def train_step(model, optimizer, x):
    grads = nnx.grad(lambda model: jnp.sum(model(x)**2))(model)
    optimizer.update(model, grads)

  def feasible():
    checks = transforms.check_sparsity(
        nnx.as_pure(nnx.state(model, nnx.Param)), constraints)
    return all(check.feasible for check in checks.values())

  x = jnp.ones((4, 6))
  train_step(model, optimizer, x)
  assert not feasible()
  train_step(model, optimizer, x)  # The 2nd update is a projection step.
  assert feasible()
  assert not np.array_equal(model.layers[0].bias[...], bias)


@pytest.mark.parametrize('constraints,message', [
    ({'encoder/columns': ('cols', 2), 'encoder/typo': ('rows', 2)},
     "'encoder/typo' matches no parameter"),
    ({'encoder/.*': ('rows', 2), '.*/columns': ('rows', 2)},
     'several constraint patterns'),
    ({'bias': ('rows', 1)}, 'matrix'),
    ({'encoder/columns': ('rows', 5)}, r'sparsity of .* must be in \[1, 4\]'),
    ({'encoder/columns': ('cols', 0)}, 'must be in'),
    ({'encoder/columns': ('diagonal', 1)}, 'axis'),
    (lambda path: None, 'select no parameter'),
    ({}, 'non-empty'),
])
def test_bad_constraints_raise_at_init(constraints, message):
  with pytest.raises(ValueError, match=message):
    transforms.sparse_projection(constraints).init(_as_jax(_params()))


def test_bad_arguments_raise():
  with pytest.raises(ValueError, match='every_n_steps'):
    transforms.sparse_projection(CONSTRAINTS, every_n_steps=0)
  tx = transforms.sparse_projection(CONSTRAINTS)
  params = _as_jax(_params())
  with pytest.raises(ValueError, match='params'):
    tx.update(params, tx.init(params))
