"""Training and evaluation of one unit of the DDSE experiment.

`run(config, workdir)` trains one (setting, method) unit of
`l0enc.experiments.ddse` end to end with a softmax loss, projects DDSE and
baseline V onto their constraints, evaluates the final model on the
validation and test sets and writes `results.json`; a finished unit is read
back from it (`l0enc.experiments.units.run_unit`), a killed one resumes from
its checkpoints in `<workdir>/train/`.
"""

import functools
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from absl import logging
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from l0enc import augment as augment_lib
from l0enc import checkpoint
from l0enc import data
from l0enc import ddse
from l0enc import ddse_sparse
from l0enc import dictionary
from l0enc import metrics
from l0enc import reporting
from l0enc import train
from l0enc import transforms
from l0enc.experiments import ddse as ddse_unit
from l0enc.experiments import units

# An epoch whose training loss is not finite is undone and retried at the
# learning rate times `lr_decay_factor`, at most this many times per unit;
# the epochs are listed in the unit's DIVERGENCES_FILE (so a resumed run
# uses the same rates) and its results.
MAX_DIVERGENCES = 3
DIVERGENCES_FILE = 'divergences.json'
# Settings that do not change a unit's results: where the data was read from.
UNIT_IGNORED_SETTINGS = ('data_dir',)


def softmax_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross entropy with integer labels (the paper's loss)."""
  return optax.softmax_cross_entropy_with_integer_labels(logits,
                                                         labels).mean()


def error_metric(logits: jax.Array, labels: jax.Array) -> dict[str, Any]:
  """`{'error': classification error in %}`."""
  return {'error': metrics.classification_error(logits, labels)}


def plateau_learning_rates(validation_errors: Sequence[float], *,
                           initial: float, factor: float, patience: int,
                           min_improvement: float = 0.0,
                           max_decays: int | None = None) -> list[float]:
  """Learning rate of each epoch, decayed when the validation error stalls.

  After each epoch, the error improves if it is below the best so far by
  more than `min_improvement`; after `patience` epochs in a row without an
  improvement the rate is multiplied by `factor` (at most `max_decays`
  times) and the count restarts. A pure function of the history, so a
  resumed run recomputes the schedule instead of storing it.

  Args:
    validation_errors: the errors after epochs 1, 2, ...
    initial: the rate of the first epoch.
    factor: the decay factor.
    patience: epochs without improvement before a decay.
    min_improvement: the smallest decrease that counts.
    max_decays: the most decays, None for no limit.

  Returns:
    `len(validation_errors) + 1` rates: entry e is the rate of epoch e
    (0-based), the last one the rate of the next epoch.
  """
  rate, best, stalled, decays = initial, float('inf'), 0, 0
  rates = [rate]
  for error in validation_errors:
    if error < best - min_improvement:
      best, stalled = error, 0
    else:
      stalled += 1
    if stalled >= patience and (max_decays is None or decays < max_decays):
      rate, stalled, decays = rate * factor, 0, decays + 1
    rates.append(rate)
  return rates


def build_model(config: ddse_unit.Config,
                pca: dictionary.PCABasis | None) -> nnx.Module:
  """The unit's model with its softmax head and PCA input set.

  Args:
    config: the unit.
    pca: the PCA basis of the training images, or None to keep the
      identity (for a model that is restored next).

  Returns:
    The model from `ddse.make_model`.
  """
  model = ddse.make_model(config.method, config.signal_dim, config.code_dim,
                          sparsity=config.sparsity,
                          num_stages=config.num_stages,
                          num_classes=config.classes,
                          rngs=nnx.Rngs(config.seed))
  if pca is not None:
    model.set_pca(pca)
  return model


def make_optimizer(config: ddse_unit.Config, model: nnx.Module
                   ) -> optax.GradientTransformation:
  """SGD with momentum (`train.make_optimizer`), then PGD for DDSE and V.

  The projection comes last in the chain: it turns the final update `u` of
  a constrained weight `w` into `P(w + u) - w`. The rate starts at
  `config.initial_learning_rate`; `train.fit`'s `rate_fn` sets it before
  each epoch (`train.set_learning_rate` finds it inside the chain).

  Args:
    config: the unit.
    model: the model from `build_model`.

  Returns:
    The optax transformation; the same object for equal settings.
  """
  constraints = None
  if isinstance(model, ddse.DDSE):
    constraints = tuple(sorted(model.sparsity_constraints().items()))
  return _sgd_then_projection(config.initial_learning_rate, config.momentum,
                              constraints, config.project_every)


@functools.cache
def _sgd_then_projection(learning_rate: float, momentum: float,
                         constraints: tuple[tuple[str, Any], ...] | None,
                         project_every: int) -> optax.GradientTransformation:
  # One object per setting, like `train.make_optimizer`'s: the
  # transformation is part of the static graph definition of the train
  # step, so units with equal settings reuse its compilation.
  sgd = train.make_optimizer('sgd', learning_rate, momentum=momentum)
  if constraints is None:
    return sgd
  return optax.chain(sgd, transforms.sparse_projection(
      dict(constraints), every_n_steps=project_every))


class Stream(NamedTuple):
  """The training data of a unit as `train.fit` streams it.

  Attributes:
    batch_fn: `batch_fn(step) -> (inputs (batch_size, n), labels
      (batch_size,))`, pure and jittable.
    steps_per_epoch: SGD steps of an epoch.
  """
  batch_fn: Callable[[jax.Array], tuple[jax.Array, jax.Array]]
  steps_per_epoch: int


def training_stream(config: ddse_unit.Config, unit_data: ddse_unit.UnitData,
                    order_key: jax.Array, augment_key: jax.Array) -> Stream:
  """The epochs of a unit: shuffled, augmented afresh every epoch.

  Epoch e visits `unit_data.epoch_indices` (the training subset, repeated
  about t/ts times with `repeat_subset`) in the order `train.fit` gives
  arrays, `jax.random.permutation(fold_in(order_key, e), num_examples)`, in
  `num_examples // batch_size` batches; step s augments its batch with the
  key `fold_in(augment_key, s)` (each copy of a repeated image on its own).
  A function of the step alone, so a resumed run sees the data it would
  have seen.

  Args:
    config: the unit.
    unit_data: from `ddse_unit.prepare_data`.
    order_key: key of the example order.
    augment_key: key of the augmentations.

  Returns:
    The `Stream`.
  """
  num_examples = len(unit_data.epoch_indices)
  steps_per_epoch = num_examples // config.batch_size
  # Every epoch's order, drawn once (the orders of a longer run extend
  # these): a permutation per step would cost far more than the step.
  orders = jnp.stack([
      jax.random.permutation(jax.random.fold_in(order_key, epoch),
                             num_examples)
      for epoch in range(config.num_epochs)])
  # A Partial over the arrays: `train.fit` compiles the batches once for
  # all units of these shapes and settings (the arrays are arguments).
  batch_fn = jax.tree_util.Partial(
      _batch_fn(config.batch_size, steps_per_epoch, config.augment_config),
      orders, jnp.asarray(unit_data.epoch_indices),
      jnp.asarray(unit_data.train_images),
      jnp.asarray(unit_data.train_labels), augment_key)
  return Stream(batch_fn, steps_per_epoch)


@functools.cache
def _batch_fn(batch_size: int, steps_per_epoch: int,
              augment_config: augment_lib.AugmentConfig) -> Callable[..., Any]:
  """`training_stream`'s batch of a step, one function per setting."""

  def batch_fn(orders, epoch_indices, images, labels, augment_key, step):
    epoch, within = jnp.divmod(step, steps_per_epoch)
    positions = jax.lax.dynamic_slice(orders[epoch],
                                      (within * batch_size,), (batch_size,))
    indices = epoch_indices[positions]
    batch = images[indices]
    if not augment_config.is_identity:
      batch = augment_lib.augment(jax.random.fold_in(augment_key, step),
                                  batch, augment_config)
    return batch.reshape(batch_size, -1), labels[indices]

  return batch_fn


def train_model(config: ddse_unit.Config, model: nnx.Module,
                unit_data: ddse_unit.UnitData, workdir: str
                ) -> tuple[list[dict[str, Any]], list[int]]:
  """Trains `model` for `config.num_epochs` epochs, resumably.

  One `train.fit` over the unit's `training_stream`, checkpointed in
  `workdir` (a killed run continues after its last finished epoch), with
  the learning rate of each epoch set by `rate_fn` from the validation
  history: the plateau schedule (`plateau_learning_rates`). An epoch that
  diverges (non-finite training loss) ends that fit; it is discarded
  (`checkpoint.discard_last_epoch`) and training goes on from the epoch before,
  the rate decayed by `lr_decay_factor` from the diverged epoch on (at most
  `MAX_DIVERGENCES` times; the epochs are kept in `divergences.json`, so a
  resumed run uses the same rates).

  Args:
    config: the unit.
    model: the model from `build_model`, trained in place.
    unit_data: from `ddse_unit.prepare_data`.
    workdir: fit's checkpoint directory.

  Returns:
    `(history, diverged_epochs)`: one dict per epoch (`train.EpochRecord`
    fields and the `learning_rate` used), and the 0-based epochs that
    diverged and were redone.
  """
  key = jax.random.key(config.seed)
  order_key = jax.random.fold_in(key, 0)
  stream = training_stream(config, unit_data, order_key,
                           jax.random.fold_in(key, 1))
  divergences_path = os.path.join(workdir, DIVERGENCES_FILE)
  divergences = (reporting.read_json(divergences_path)
                 if os.path.exists(divergences_path) else [])
  # Copies, here and when restored: fit donates the model's buffers.
  initial_state = jax.tree.map(jnp.copy, nnx.state(model))
  tx = make_optimizer(config, model)
  # The checkpoint identifies the data by the images before augmentation.
  data_id = checkpoint.data_fingerprint(
      unit_data.train_images[unit_data.epoch_indices],
      unit_data.train_labels[unit_data.epoch_indices])

  def schedule(history):
    rates = plateau_learning_rates(
        [record.eval_metrics['error'] for record in history],
        initial=config.initial_learning_rate,
        factor=config.lr_decay_factor,
        patience=config.lr_patience,
        min_improvement=config.lr_min_improvement,
        max_decays=config.max_lr_decays)
    # Each diverged epoch decays the rate from that epoch on.
    return [rate * config.lr_decay_factor ** sum(
        diverged <= epoch for diverged in divergences)
            for epoch, rate in enumerate(rates)]

  while True:
    history = train.fit(
        model, stream.batch_fn, None, key=order_key,
        config=train.TrainConfig(num_epochs=config.num_epochs,
                                 batch_size=config.batch_size),
        tx=tx, loss_fn=softmax_loss, metric_fn=error_metric,
        x_eval=unit_data.x_validation, y_eval=unit_data.y_validation,
        workdir=workdir, data_id=data_id,
        steps_per_epoch=stream.steps_per_epoch,
        rate_fn=lambda history: schedule(history)[len(history)],
        # A diverged epoch is recorded, not raised, to be undone below.
        on_nonfinite_loss='record').history
    if np.isfinite(history[-1].train_loss):
      break
    # Diverged: undo the epoch and retry it at a smaller rate.
    epoch = len(history) - 1
    if len(divergences) >= MAX_DIVERGENCES:
      raise FloatingPointError(
          f'{workdir}: training diverged {len(divergences) + 1} times '
          f'(epochs {divergences + [epoch]}); lower the learning rate.')
    logging.warning('Epoch %d diverged (train loss %s); back to epoch %d '
                    'with the learning rate x%g.', epoch + 1,
                    history[-1].train_loss, epoch, config.lr_decay_factor)
    if checkpoint.discard_last_epoch(workdir) == 0:
      nnx.update(model, jax.tree.map(jnp.copy, initial_state))
    divergences.append(epoch)
    reporting.write_json_atomic(divergences_path, divergences)
  rates = schedule(history)
  return [record._asdict() | {'learning_rate': rates[epoch]}
          for epoch, record in enumerate(history)], divergences


def project_and_check(model: ddse.DDSE) -> dict[str, int]:
  """Projects DDSE / baseline V onto eq. (6) and checks it.

  Args:
    model: a DDSE (with or without shortcuts), updated in place.

  Returns:
    `{parameter path: largest number of nonzeros of a row / column}`.

  Raises:
    AssertionError: if a row of W1 or W3 or a column of W2 has more than s
      nonzeros after the projection.
  """
  constraints = model.sparsity_constraints()
  nnx.update(model, transforms.project_params(nnx.state(model, nnx.Param),
                                              constraints))
  checks = transforms.check_sparsity(nnx.state(model, nnx.Param), constraints)
  infeasible = {path: check for path, check in checks.items()
                if not check.feasible}
  if infeasible:
    raise AssertionError(f'The projected model violates eq. (6): '
                         f'{infeasible}.')
  return {path: check.max_nonzeros for path, check in checks.items()}


def device_name() -> str:
  device = jax.devices()[0]
  kind = device.device_kind
  name = device.platform if kind.lower() == device.platform else (
      f'{device.platform} ({kind})')
  if device.platform == 'cpu':
    name += f', {os.cpu_count()} cores'
  return name


def run(config: ddse_unit.Config, workdir: str, *,
        split: data.Split | None = None,
        report_only: bool = False) -> dict[str, Any] | None:
  """Trains and evaluates one unit; returns (and writes) its results.

  A finished unit is read back from its `results.json` (`units.run_unit`:
  it must hold the same config, where the data was read from aside).

  Args:
    config: the unit.
    workdir: the unit's directory: `train/` holds the checkpoints,
      `results.json` the results.
    split: the loaded dataset, to share one load between units; loaded
      from `config` if None.
    report_only: do not train an unfinished unit: return None.

  Returns:
    A JSON-able dict: the config, the data sizes, the per-epoch history,
    the final validation and test errors, the sparsity check (DDSE and V)
    and the parameter counts; None for an unfinished unit with
    `report_only`.

  Raises:
    ValueError: `workdir` holds the results of another configuration.
  """
  return units.run_unit(
      workdir, ddse_unit.config_json(config),
      lambda unit_dir: _train_and_evaluate(config, unit_dir, split),
      results_file=ddse_unit.RESULTS_FILE, settings_key='config',
      ignore=UNIT_IGNORED_SETTINGS, report_only=report_only)


def _train_and_evaluate(config: ddse_unit.Config, workdir: str,
                        split: data.Split | None) -> dict[str, Any]:
  """`run`'s computation: the unit's results, without its config."""
  start = time.perf_counter()
  unit_data = ddse_unit.prepare_data(config, split)
  pca = jax.tree.map(np.asarray, dictionary.pca_basis(jnp.asarray(
      unit_data.train_images.reshape(len(unit_data.train_images), -1))))
  model = build_model(config, pca)
  logging.info('Unit %s: %d training images (x%d per epoch), m=%d, k=%d, '
               's=%d.', config.method, len(unit_data.train_images),
               len(unit_data.epoch_indices) // len(unit_data.train_images),
               config.code_dim, config.num_stages, config.sparsity)
  history, diverged_epochs = train_model(config, model, unit_data,
                                         os.path.join(workdir, 'train'))
  max_nonzeros = None
  if config.is_sparse:
    max_nonzeros = project_and_check(model)
  evaluations = {
      name: train.evaluate(model, x, y, loss_fn=softmax_loss,
                           metric_fn=error_metric)
      for name, (x, y) in (('validation', (unit_data.x_validation,
                                           unit_data.y_validation)),
                           ('test', (unit_data.x_test, unit_data.y_test)))}
  params = nnx.state(model, nnx.Param)
  results = {
      'method_label': ddse_unit.METHOD_LABELS[config.method],
      'signal_dim': config.signal_dim,
      'sparsity': config.sparsity,
      'data': {'num_train_split': unit_data.num_full_train,
               'num_train_used': len(unit_data.train_images),
               'num_epoch_examples': len(unit_data.epoch_indices),
               'num_validation': len(unit_data.x_validation),
               'num_test': len(unit_data.x_test)},
      'history': history,
      'validation_error': evaluations['validation'].metrics['error'],
      'validation_loss': evaluations['validation'].loss,
      'test_error': evaluations['test'].metrics['error'],
      'test_loss': evaluations['test'].loss,
      'max_nonzeros': max_nonzeros,
      'diverged_epochs': diverged_epochs,
      'num_parameters': int(sum(np.size(p) for p in jax.tree.leaves(params))),
      'train_seconds': float(sum(record['seconds'] for record in history)),
      'device': device_name(),
  }
  if config.is_sparse:
    results['parameter_counts'] = ddse_sparse.count_parameters(model)._asdict()
  results['unit_seconds'] = time.perf_counter() - start
  logging.info('Unit %s done: validation error %.2f%%, test error %.2f%%.',
               config.method, results['validation_error'],
               results['test_error'])
  return results


def restore_final_model(config: ddse_unit.Config, workdir: str) -> nnx.Module:
  """The reported model of a finished unit, rebuilt from its checkpoint.

  Args:
    config: the unit.
    workdir: the unit's directory (as given to `run`).

  Returns:
    The model after its last epoch (PCA included), projected and checked
    for DDSE and baseline V as `run` does.
  """
  # The checkpoint holds the PCA buffers too.
  model = checkpoint.restore_model(os.path.join(workdir, 'train'),
                              build_model(config, None))
  if config.is_sparse:
    project_and_check(model)
  return model

