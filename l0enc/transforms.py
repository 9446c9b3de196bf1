"""Projected gradient descent as an optax transformation (DDSE, eqs. 6-8).

DDSE trains its weights under cardinality constraints: W1 and W3 have at most
`s` nonzeros per row, W2 at most `s` per column (eq. 6). Projected gradient
descent (eq. 8) follows each SGD step with the projection P onto that set,
which keeps the `s` largest-magnitude entries of each row / column
(`l0enc.projections`). The paper uses the multi-step variant of its ref.
[15]: several (15 by default) unconstrained SGD steps, then one projection.

`sparse_projection` is that projection as a `GradientTransformation`. Put it
last in a chain,

    tx = optax.chain(optax.sgd(0.01, momentum=0.9),
                     sparse_projection(model.sparsity_constraints()))

and on a projection step it replaces the update `u` of each constrained
parameter `w` by `P(w + u) - w`, so that `optax.apply_updates` lands `w` on
the feasible set (entries zeroed by P become exactly 0.0); on the other steps
the updates pass through. The momentum (or any other optimizer state) keeps
accumulating the unconstrained gradients, as in plain multi-step PGD.

Parameters are selected by their path, the '/'-joined keys of the pytree,
e.g. 'input_weights' or 'encoder/synthesis_weights'. Paths are the same for
plain dicts, pure `nnx.State`s and `nnx.State`s of `nnx.Variable`s (a
variable counts as one leaf). A parameter of shape `(..., rows, cols)` is
constrained per matrix: leading axes (the stage axis of untied weights) are
batch axes.
"""

from collections.abc import Callable, Mapping
import functools
import re
from typing import Any, NamedTuple

from flax import nnx
import jax
import jax.numpy as jnp
import optax

from l0enc import projections
from l0enc import validation

ROWS = 'rows'
COLUMNS = 'cols'


class SparsityConstraint(NamedTuple):
  """At most `sparsity` nonzeros per row or per column of a matrix (eq. 6).

  Attributes:
    axis: `'rows'` (the constraint of W1 and W3) or `'cols'` (W2).
    sparsity: s, the nonzeros allowed per row / column, at least 1.
  """
  axis: str
  sparsity: int


# A path pattern (a regular expression, matched in full against the path)
# for each constraint, or a function from a path to its constraint (None for
# an unconstrained parameter).
Constraints = (Mapping[str, SparsityConstraint | tuple[str, int]]
               | Callable[[str], SparsityConstraint | None])


class SparseProjectionState(NamedTuple):
  """State of `sparse_projection`.

  Attributes:
    steps_since_projection: int32 scalar in `[0, every_n_steps)`, the updates
      since the last projection. It is 0 after a projection step, so (from a
      feasible start) the parameters are feasible exactly when it is 0.
  """
  steps_since_projection: jax.Array


class SparsityCheck(NamedTuple):
  """How sparse a constrained parameter is.

  Attributes:
    constraint: the parameter's `SparsityConstraint`.
    max_nonzeros: the largest number of nonzeros of any row (or column) of
      any matrix of the parameter, a Python int.
  """
  constraint: SparsityConstraint
  max_nonzeros: int

  @property
  def feasible(self) -> bool:
    """True if the parameter satisfies its constraint."""
    return self.max_nonzeros <= self.constraint.sparsity


def path_string(path: tuple[Any, ...]) -> str:
  """The '/'-joined key names of a pytree key path, e.g. 'head/kernel'."""
  return jax.tree_util.keystr(path, simple=True, separator='/')


def _is_variable(node: Any) -> bool:
  return isinstance(node, nnx.Variable)


def _array(leaf: Any) -> jax.Array:
  return leaf[...] if _is_variable(leaf) else leaf


def _as_constraint(path: str, constraint: Any) -> SparsityConstraint:
  axis, sparsity = constraint
  if axis not in (ROWS, COLUMNS):
    raise ValueError(f"The constraint of '{path}' must have axis '{ROWS}' or "
                     f"'{COLUMNS}', got {axis!r}.")
  return SparsityConstraint(
      axis, validation.check_int_in_range(f'sparsity of {path!r}', sparsity, 1,
                                          2**31 - 1))


def _constraint_lookup(
    constraints: Constraints) -> Callable[[str], SparsityConstraint | None]:
  """A function from a path to its constraint, for either form of spec."""
  if callable(constraints):
    def checked(path):
      constraint = constraints(path)
      return None if constraint is None else _as_constraint(path, constraint)
    return checked
  if not isinstance(constraints, Mapping) or not constraints:
    raise ValueError('constraints must be a non-empty mapping from path '
                     'patterns to (axis, sparsity), or a function of the '
                     f'path; got {constraints!r}.')
  compiled = [(re.compile(pattern), _as_constraint(pattern, constraint))
              for pattern, constraint in constraints.items()]

  def lookup(path):
    matches = [c for pattern, c in compiled if pattern.fullmatch(path)]
    if len(matches) > 1:
      raise ValueError(f"Path '{path}' matches several constraint patterns.")
    return matches[0] if matches else None
  return lookup


def _constrained_leaves(
    params: Any, constraints: Constraints) -> dict[str, SparsityConstraint]:
  """The constraint of every constrained leaf of `params`, after checks.

  Raises:
    ValueError: if nothing is constrained, if a pattern of a mapping matches
      no leaf (a misspelt path would otherwise silently skip the
      projection), or if a leaf is not a (stack of) matrices with at least
      `sparsity` entries along the constrained axis.
  """
  lookup = _constraint_lookup(constraints)
  found = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(
      params, is_leaf=_is_variable):
    name = path_string(path)
    constraint = lookup(name)
    if constraint is None:
      continue
    shape = jnp.shape(_array(leaf))
    if len(shape) < 2:
      raise ValueError(f"Constrained parameter '{name}' must be a matrix or "
                       f'a stack of matrices, got shape {shape}.')
    length = shape[-1] if constraint.axis == ROWS else shape[-2]
    validation.check_int_in_range(
        f"sparsity of '{name}' (at most its {constraint.axis[:-1]} length "
        f'{length})', constraint.sparsity, 1, length)
    found[name] = constraint
  if not found:
    raise ValueError('The constraints select no parameter; the paths are: '
                     f'{_paths(params)}.')
  if isinstance(constraints, Mapping):
    for pattern in constraints:
      if not any(re.fullmatch(pattern, name) for name in found):
        raise ValueError(f"Constraint pattern '{pattern}' matches no "
                         f'parameter; the paths are: {_paths(params)}.')
  return found


def _paths(params: Any) -> list[str]:
  return [path_string(path) for path, _ in
          jax.tree_util.tree_leaves_with_path(params, is_leaf=_is_variable)]


def _project(weights: jax.Array, constraint: SparsityConstraint) -> jax.Array:
  """P_l of eq. (8) on each matrix of `weights` (shape `(..., rows, cols)`)."""
  project = (projections.project_rows_top_s if constraint.axis == ROWS
             else projections.project_cols_top_s)
  project = functools.partial(project, s=constraint.sparsity)
  for _ in range(jnp.ndim(weights) - 2):
    project = jax.vmap(project)
  return project(weights)


def _map_constrained(fn: Callable[..., jax.Array], tree: Any,
                     constraints: dict[str, SparsityConstraint],
                     *rest: Any) -> Any:
  """Maps `fn(leaf, *rest_leaves, constraint)` over the constrained leaves.

  Unconstrained leaves are returned unchanged; `nnx.Variable` leaves keep
  their type and metadata (the function is mapped over their value).
  """
  def leaf_fn(path, leaf, *rest_leaves):
    constraint = constraints.get(path_string(path))
    if constraint is None:
      return leaf
    return jax.tree.map(lambda *arrays: fn(*arrays, constraint), leaf,
                        *rest_leaves)
  return jax.tree.map_with_path(leaf_fn, tree, *rest, is_leaf=_is_variable)


def project_params(params: Any, constraints: Constraints) -> Any:
  """Projects every constrained parameter onto its feasible set once (eq. 8).

  Use it for a feasible start and for the model that is reported or
  exported, which must be projected even when training did not end on a
  projection step. Projecting a feasible parameter leaves it unchanged.

  Args:
    params: a pytree of arrays: a dict, a pure `nnx.State`, or an
      `nnx.State` of variables (as from `nnx.state(model, nnx.Param)`; then
      apply the result with `nnx.update(model, ...)`).
    constraints: the constraint patterns or function (see `Constraints`).

  Returns:
    A pytree like `params` with the constrained leaves projected and the
    others unchanged.
  """
  found = _constrained_leaves(params, constraints)
  return _map_constrained(_project, params, found)


def check_sparsity(params: Any,
                   constraints: Constraints) -> dict[str, SparsityCheck]:
  """The largest number of nonzeros per row / column of each constrained leaf.

  Args:
    params: a pytree of concrete arrays, as for `project_params`.
    constraints: the constraint patterns or function.

  Returns:
    `{path: SparsityCheck(constraint, max_nonzeros)}` for each constrained
    leaf; `all(c.feasible for c in result.values())` checks eq. (6).
  """
  found = _constrained_leaves(params, constraints)
  counts = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(
      params, is_leaf=_is_variable):
    name = path_string(path)
    if name in found:
      axis = -1 if found[name].axis == ROWS else -2
      counts[name] = SparsityCheck(found[name], int(
          jnp.max(jnp.count_nonzero(_array(leaf), axis=axis))))
  return counts


def sparse_projection(constraints: Constraints,
                      every_n_steps: int = 15) -> optax.GradientTransformation:
  """Projected gradient descent (eq. 8), projecting every N-th update.

  Counting updates from 1, the update number `t` is a projection step when
  `t % every_n_steps == 0`: the first projection happens at the
  `every_n_steps`-th update (after N unconstrained SGD steps, as in the
  paper's multi-step strategy, Sec. 4.1), then every N updates; with
  `every_n_steps=1` every update is projected (plain PGD). On a projection
  step each constrained update `u` of a parameter `w` becomes
  `P(w + u) - w`; other updates, and all updates on other steps, pass
  through unchanged. Start from feasible parameters (`project_params`, or
  DDSE's initialization) so that the constraint also holds at step 0.

  The step decision is a `lax.cond` on the int32 counter in the state, so a
  jitted train step compiles once and skips the top-s selection on the
  steps in between.

  Args:
    constraints: which parameters to constrain, by path: a mapping from a
      regular expression (matched in full against the path) to a
      `SparsityConstraint` or an `(axis, sparsity)` pair, or a function
      from the path to a constraint or None. `DDSE.sparsity_constraints()`
      gives the DDSE's.
    every_n_steps: N >= 1, the number of updates per projection.

  Returns:
    An `optax.GradientTransformation` whose `update` needs `params`; its
    state is a `SparseProjectionState`. `init` raises a ValueError for
    constraints that select nothing, patterns that match no parameter, or
    sparsities larger than the constrained axis.
  """
  every_n_steps = validation.check_int_in_range('every_n_steps', every_n_steps,
                                                1, 2**31 - 1)

  def init_fn(params):
    _constrained_leaves(params, constraints)
    return SparseProjectionState(jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError('sparse_projection needs the params: call '
                       'update(updates, state, params).')
    found = _constrained_leaves(params, constraints)
    steps = state.steps_since_projection + 1
    project_now = steps >= every_n_steps

    def projected_update(update, param, constraint):
      feasible = _project((param + update).astype(param.dtype), constraint)
      return (feasible - param).astype(update.dtype)

    updates = jax.lax.cond(
        project_now,
        lambda u: _map_constrained(projected_update, u, found, params),
        lambda u: u, updates)
    return updates, SparseProjectionState(
        jnp.where(project_now, 0, steps).astype(jnp.int32))

  return optax.GradientTransformation(init_fn, update_fn)
