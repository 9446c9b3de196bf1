"""Training of the encoders: a jit-compiled functional core and a `fit` loop.

The core is two pure functions of a split NNX state (`nnx.split`):

    graphdef, state = nnx.split((model, optimizer))
    state, loss = train_step(graphdef, state, inputs, targets, loss_fn)

and `eval_step(graphdef, state, inputs)` for `nnx.split(model)`, which runs
the model in evaluation mode (exact HELU, no dropout). A loss is any
`loss_fn(outputs, targets) -> scalar` averaged over the batch;
`squared_error_loss` regresses codes (Experiment A), task losses such as a
softmax cross entropy plug in the same way.

`fit` runs SGD epochs over plain arrays with per-epoch shuffling from an
explicit PRNG key (or over a stream: a pure function from the step number to
a batch, e.g. fresh synthetic samples from
`l0enc.synthetic.synthetic_batch`), HELU sigma annealing (0.2, 0.02, ... by
default, for models holding `l0enc.models.HeluSigma`), evaluation after each
epoch, log lines, an optional callback, an optional `stop_fn` (early
stopping on a function of the history, e.g. a validation plateau) and an
optional `rate_fn` (the learning rate of each epoch as a function of the
history, set in the optimizer state built by `make_optimizer`). With several
devices each step is data parallel: the batch is sharded along the 1-D mesh
axis `'data'` and the parameters are replicated, so XLA all-reduces the
gradients.

Checkpoints (`workdir`): after every epoch, `l0enc.checkpoint` writes the
model and optimizer state and a record of the run (config, PRNG key, a
fingerprint of the training data, history), so that a crash leaves the
previous checkpoint valid. `fit` with a `workdir` that holds a checkpoint
resumes from it and ends with the same parameters as an uninterrupted run;
it refuses to resume another run or other data, even of the same shape.
`checkpoint.discard_last_epoch` undoes an epoch that diverged and
`checkpoint.restore_model` loads the trained parameters.

Bad numbers: `fit` refuses NaN or infinite data up front, and an epoch whose
loss (or whose parameters) became non-finite raises
`divergence.DivergedError`, naming the epoch and the first bad step, before
anything of it is checkpointed: no checkpoint ever holds non-finite
parameters. With `on_nonfinite_loss='record'` the epoch is recorded instead
(for callers that undo it with `checkpoint.discard_last_epoch` and retry,
like the DDSE experiment).
"""

from collections.abc import Callable, Mapping, Sequence
import functools
import os
import time
from typing import Any, NamedTuple

from absl import logging
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from l0enc import checkpoint
from l0enc import divergence
from l0enc import models
from l0enc import validation

DATA_AXIS = 'data'
PROGRESS_CHUNKS = 20  # train_steps dispatches per epoch, at most.
NONFINITE_LOSS_POLICIES = ('raise', 'record')

LossFn = Callable[[jax.Array, Any], jax.Array]
MetricFn = Callable[[jax.Array, Any], Mapping[str, Any]]


class TrainConfig(NamedTuple):
  """Settings of `fit`; the defaults are the paper's (Experiment section).

  Attributes:
    num_epochs: epochs to train in total (a resumed run trains the rest).
    batch_size: examples per SGD step; a multiple of the number of devices.
      Each epoch uses `num_examples // batch_size` full batches.
    initial_sigma: HELU_sigma ramp width in the first epoch, in [0, 1).
    sigma_decay: sigma is multiplied by this after each epoch, in [0, 1].
    min_sigma: a floor for sigma (0 in the paper). The ramps of HELU_sigma
      have slope 1/sigma, so a pre-activation that falls on one takes a step
      of that size; a floor keeps late epochs stable.
    eval_batch_size: examples per evaluation batch.
  """
  num_epochs: int = 10
  batch_size: int = 128
  initial_sigma: float = 0.2
  sigma_decay: float = 0.1
  min_sigma: float = 0.0
  eval_batch_size: int = 1024


class EpochRecord(NamedTuple):
  """What happened in one epoch.

  Attributes:
    epoch: the number of epochs completed (1 after the first).
    step: the number of SGD steps completed.
    sigma: the HELU_sigma ramp width used, None if the model has no HELU.
    train_loss: the mean of the epoch's batch losses.
    eval_loss: the loss on the evaluation set, None without one.
    eval_metrics: `metric_fn` on the evaluation set, as floats.
    seconds: wall time of the epoch, evaluation included.
  """
  epoch: int
  step: int
  sigma: float | None
  train_loss: float
  eval_loss: float | None
  eval_metrics: dict[str, float]
  seconds: float


class FitResult(NamedTuple):
  """Result of `fit`.

  Attributes:
    model: the trained model (the model passed in, updated in place).
    history: one `EpochRecord` per epoch, those of resumed runs included.
    initial_evaluation: with `restore_best`, the `Evaluation` of the model
      `fit` started from (a candidate for the best, as epoch 0); else None.
  """
  model: nnx.Module
  history: list[EpochRecord]
  initial_evaluation: 'Evaluation | None' = None


class Evaluation(NamedTuple):
  """Result of `evaluate`: the loss and the metrics, as floats."""
  loss: float
  metrics: dict[str, float]


def squared_error_loss(outputs: jax.Array, targets: jax.Array) -> jax.Array:
  """`||outputs - targets||^2` summed over the last axis, averaged over the rest.

  The default loss of `fit`: code regression against target codes.

  Args:
    outputs: predicted codes, shape `(..., p)`.
    targets: target codes, same shape.

  Returns:
    A scalar.
  """
  return jnp.mean(jnp.sum(jnp.square(outputs - targets), axis=-1))


def sigma_at_epoch(config: TrainConfig, epoch: int) -> float:
  """HELU_sigma of epoch `epoch` (0-based): `max(sigma_0 decay^epoch, floor)`."""
  return max(config.initial_sigma * config.sigma_decay**epoch,
             config.min_sigma)


def _train_step(graphdef, state, inputs, targets, loss_fn):
  model, optimizer = nnx.merge(graphdef, state)
  loss, grads = nnx.value_and_grad(
      lambda model: loss_fn(model(inputs), targets))(model)
  optimizer.update(model, grads)
  return nnx.state((model, optimizer)), loss


@functools.partial(jax.jit, static_argnames=('graphdef', 'loss_fn'),
                   donate_argnames=('state',))
def train_step(graphdef: nnx.GraphDef, state: nnx.State, inputs: jax.Array,
               targets: Any, loss_fn: LossFn = squared_error_loss
               ) -> tuple[nnx.State, jax.Array]:
  """One optimizer step on a batch, as a pure function of the state.

  Args:
    graphdef: from `nnx.split((model, optimizer))`.
    state: the matching state; donated (do not reuse it after the call).
    inputs: a batch of signals, shape `(batch, n)`.
    targets: what `loss_fn` compares the outputs with, e.g. codes.
    loss_fn: `loss_fn(outputs, targets) -> scalar`, hashable (static).

  Returns:
    `(new_state, loss)`, the loss before the update.
  """
  return _train_step(graphdef, state, inputs, targets, loss_fn)


@functools.partial(jax.jit, static_argnames=('graphdef', 'loss_fn'),
                   donate_argnames=('state',))
def train_steps(graphdef: nnx.GraphDef, state: nnx.State, inputs: jax.Array,
                targets: Any, loss_fn: LossFn = squared_error_loss
                ) -> tuple[nnx.State, jax.Array]:
  """`train_step` over a stack of batches, in one `lax.scan`.

  One dispatch for many steps: on an accelerator, small models are bound by
  the per-step launch and transfer overhead otherwise.

  Args:
    graphdef: from `nnx.split((model, optimizer))`.
    state: the matching state; donated (do not reuse it after the call).
    inputs: batches of signals, shape `(num_steps, batch, n)`.
    targets: the matching targets, leading axes `(num_steps, batch)`.
    loss_fn: `loss_fn(outputs, targets) -> scalar`, hashable (static).

  Returns:
    `(new_state, losses)`, the loss of each step before its update.
  """
  return jax.lax.scan(
      lambda state, batch: _train_step(graphdef, state, *batch, loss_fn),
      state, (inputs, targets))


@functools.partial(jax.jit, static_argnames=('graphdef',))
def eval_step(graphdef: nnx.GraphDef, state: nnx.State,
              inputs: jax.Array) -> jax.Array:
  """The model's outputs in evaluation mode (exact HELU, no dropout).

  Args:
    graphdef: from `nnx.split(model)`.
    state: the matching state.
    inputs: a batch of signals, shape `(batch, n)`.

  Returns:
    The outputs, e.g. codes of shape `(batch, p)`.
  """
  model = nnx.merge(graphdef, state)
  model.eval()
  return model(inputs)


@jax.jit
def _stream_chunk(batch_fn: jax.tree_util.Partial, steps: jax.Array) -> Any:
  """The batches of `steps` from a stream given as a `Partial`."""
  return jax.vmap(batch_fn)(steps)


def data_parallel_mesh(
    devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  """A 1-D mesh with axis `'data'` over `devices` (all devices by default)."""
  devices = jax.devices() if devices is None else devices
  return jax.sharding.Mesh(np.asarray(devices), (DATA_AXIS,))


def _check_mesh(mesh: jax.sharding.Mesh | None) -> jax.sharding.Mesh:
  mesh = data_parallel_mesh() if mesh is None else mesh
  if tuple(mesh.axis_names) != (DATA_AXIS,):
    raise ValueError("mesh must be 1-D with the axis name 'data', got axes "
                     f'{mesh.axis_names}.')
  return mesh


def _replicated(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def _batch_sharded(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(DATA_AXIS))


def predict(model: nnx.Module, inputs: Any, *, batch_size: int = 1024,
            mesh: jax.sharding.Mesh | None = None) -> np.ndarray:
  """Runs `model` in evaluation mode over `inputs` in large jitted batches.

  The model itself is left in its current mode. Batches are sharded over
  the mesh; the last one is padded (with copies of its last row) to the full
  batch shape, so everything compiles once.

  Args:
    model: the model.
    inputs: signals, shape `(num_examples, n)`.
    batch_size: examples per batch (rounded up to a multiple of the number
      of devices).
    mesh: a 1-D mesh with axis `'data'`; all devices by default.

  Returns:
    The outputs, a NumPy array with `num_examples` rows.
  """
  mesh = _check_mesh(mesh)
  inputs = np.asarray(inputs)
  num_examples = len(inputs)
  if num_examples == 0:
    raise ValueError('predict needs at least one example.')
  batch_size = validation.check_int_in_range('batch_size', batch_size, 1,
                                             2**31 - 1)
  batch_size = min(batch_size, num_examples)
  batch_size = -(-batch_size // mesh.size) * mesh.size
  graphdef, state = nnx.split(model)
  state = jax.device_put(state, _replicated(mesh))
  outputs = []
  for start in range(0, num_examples, batch_size):
    batch = inputs[start:start + batch_size]
    padding = batch_size - len(batch)
    batch = np.pad(batch, [(0, padding)] + [(0, 0)] * (batch.ndim - 1),
                   mode='edge')
    batch_outputs = eval_step(graphdef, state,
                              jax.device_put(batch, _batch_sharded(mesh)))
    outputs.append(np.asarray(batch_outputs)[:batch_size - padding])
  return np.concatenate(outputs)


def evaluate(model: nnx.Module, inputs: Any, targets: Any, *,
             loss_fn: LossFn = squared_error_loss,
             metric_fn: MetricFn | None = None, batch_size: int = 1024,
             mesh: jax.sharding.Mesh | None = None) -> Evaluation:
  """The loss and metrics of `model` (evaluation mode) on a whole data set.

  Args:
    model: the model.
    inputs: signals, shape `(num_examples, n)`.
    targets: the matching targets.
    loss_fn: `loss_fn(outputs, targets) -> scalar`.
    metric_fn: `metric_fn(outputs, targets) -> {name: scalar}` on all the
      outputs at once (so it may match clusters, count supports, ...).
    batch_size: examples per batch of `predict`.
    mesh: as for `predict`.

  Returns:
    `Evaluation(loss, metrics)`.
  """
  outputs = predict(model, inputs, batch_size=batch_size, mesh=mesh)
  metrics = {} if metric_fn is None else metric_fn(outputs, targets)
  return Evaluation(float(loss_fn(outputs, targets)),
                    {name: float(value) for name, value in metrics.items()})


def _check_config(config: TrainConfig, num_devices: int) -> None:
  validation.check_int_in_range('num_epochs', config.num_epochs, 0, 2**31 - 1)
  validation.check_int_in_range('batch_size', config.batch_size, 1, 2**31 - 1)
  validation.check_int_in_range('eval_batch_size', config.eval_batch_size, 1,
                                2**31 - 1)
  if not 0 <= config.initial_sigma < 1:
    raise ValueError(f'initial_sigma must be in [0, 1), got '
                     f'{config.initial_sigma}.')
  if not 0 <= config.min_sigma <= config.initial_sigma:
    raise ValueError(f'min_sigma must be in [0, initial_sigma], got '
                     f'{config.min_sigma}.')
  if not 0 <= config.sigma_decay <= 1:
    raise ValueError(f'sigma_decay must be in [0, 1], got '
                     f'{config.sigma_decay}.')
  if config.batch_size % num_devices:
    raise ValueError(f'batch_size={config.batch_size} must be a multiple of '
                     f'the number of devices, {num_devices}.')


OPTIMIZERS = ('sgd', 'adam')
PAPER_LEARNING_RATE = 0.01  # The l0 paper's SGD (Experiment section).


@functools.cache
def make_optimizer(name: str, learning_rate: float | optax.Schedule, *,
                   momentum: float | None = None,
                   clip_norm: float | None = None,
                   before: tuple[optax.GradientTransformation, ...] = ()
                   ) -> optax.GradientTransformation:
  """The optimizer of every experiment: clipping, extra terms, SGD or Adam.

  The rate is an `optax.inject_hyperparams` hyperparameter, so it lives in
  the optimizer state (checkpointed with it, readable and settable there)
  and may be a schedule; nothing else in `fit` holds a rate. Equal arguments
  return the same object: the transformation is part of the static graph
  definition of `train_step`, so equal settings reuse the compiled step.

  Args:
    name: 'sgd' or 'adam'.
    learning_rate: a positive step size, or an optax schedule of the step.
    momentum: SGD momentum in [0, 1), or None (SGD only).
    clip_norm: clip the gradients to this global norm first, or None.
    before: transformations applied after clipping and before the optimizer
      (e.g. `tasks.head_weight_decay`).

  Returns:
    The optax transformation.
  """
  if name not in OPTIMIZERS:
    raise ValueError(f'optimizer must be one of {OPTIMIZERS}, got {name!r}.')
  if not callable(learning_rate):
    validation.check_positive('learning_rate', learning_rate)
  if momentum is not None:
    if name != 'sgd':
      raise ValueError(f'momentum is for SGD only, got it with {name!r}.')
    if not 0 <= momentum < 1:
      raise ValueError(f'momentum must be None or in [0, 1), got {momentum}.')
  if clip_norm is not None:
    validation.check_positive('clip_norm', clip_norm)
  if name == 'sgd':
    step = optax.inject_hyperparams(optax.sgd)(learning_rate=learning_rate,
                                               momentum=momentum)
  else:
    step = optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate)
  clip = () if clip_norm is None else (optax.clip_by_global_norm(clip_norm),)
  return optax.chain(*clip, *before, step)


def _as_typed_key(key: jax.Array) -> jax.Array:
  if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
    return key
  return jax.random.wrap_key_data(key)


BatchFn = Callable[[jax.Array], tuple[jax.Array, Any]]
StopFn = Callable[[Sequence[EpochRecord]], bool]
RateFn = Callable[[Sequence[EpochRecord]], float]


def fit(model: nnx.Module, x_train: Any, y_train: Any = None, *,
        key: jax.Array,
        config: TrainConfig = TrainConfig(),
        tx: optax.GradientTransformation | None = None,
        loss_fn: LossFn = squared_error_loss,
        metric_fn: MetricFn | None = None, x_eval: Any = None,
        y_eval: Any = None, workdir: str | os.PathLike | None = None,
        callback: Callable[[EpochRecord], None] | None = None,
        mesh: jax.sharding.Mesh | None = None,
        progress: bool = True, on_nonfinite_loss: str = 'raise',
        data_id: str | None = None, steps_per_epoch: int | None = None,
        stop_fn: StopFn | None = None,
        rate_fn: RateFn | None = None,
        restore_best: bool = False) -> FitResult:
  """Trains `model` on `(x_train, y_train)` by minibatch gradient descent.

  Each epoch visits `num_examples // batch_size` batches in the order of
  `jax.random.permutation(jax.random.fold_in(key, epoch), num_examples)`;
  the HELU_sigma of the model (if any) is `sigma_at_epoch(config, epoch)`
  for the whole epoch. After each epoch the model is evaluated on
  `(x_eval, y_eval)` (if given), a line is logged, `callback` is called and
  a checkpoint is written to `workdir` (if given). If `workdir` already
  holds a checkpoint, training resumes after its last epoch; the model and
  optimizer are restored from it, so they must be built as in the first
  run.

  With a stream, `x_train` is a function `batch_fn(step) -> (inputs,
  targets)` of the SGD step number (0, 1, ...), pure and traceable (it is
  `vmap`ped over the steps of each chunk under `jit`); epoch e runs steps
  `e * steps_per_epoch` to `(e + 1) * steps_per_epoch - 1`, so a resumed run
  sees the batches the first would have. `config.batch_size` is not used
  then (the batches have the size `batch_fn` gives them). A
  `jax.tree_util.Partial` over arrays is compiled once per function and
  array shapes (its arrays are arguments of the compiled chunk, not
  constants in it), so streams of equal shapes share the compilation;
  another function is compiled for each `fit` call.

  Args:
    model: the model to train, updated in place; `fit` puts it in training
      mode (`model.train()`).
    x_train: training signals, shape `(num_examples, n)`; or a stream
      `batch_fn(step) -> (inputs, targets)` (a `BatchFn`, see above).
    y_train: training targets with `num_examples` rows (e.g. codes); None
      with a stream.
    key: PRNG key of the data order.
    config: the training settings.
    tx: the optax transformation, applied to the `nnx.Param`s; by default
      the paper's plain SGD at `PAPER_LEARNING_RATE`. Build it with
      `make_optimizer`: every rate then lives in the optimizer state.
    loss_fn: `loss_fn(outputs, targets) -> scalar` (hashable: one
      compilation per function object).
    metric_fn: `metric_fn(outputs, targets) -> {name: scalar}`, evaluated on
      the whole evaluation set.
    x_eval: evaluation signals, or None.
    y_eval: evaluation targets (required with `x_eval`).
    workdir: directory for checkpoints, or None for none.
    callback: called with each `EpochRecord`.
    mesh: a 1-D mesh with axis `'data'`; all devices by default.
    progress: show a progress bar over each epoch's steps on stderr, when
      stderr is a terminal.
    on_nonfinite_loss: what an epoch whose loss or parameters became NaN
      or infinite does. 'raise' (default): raise `divergence.DivergedError`
      naming the epoch and the first bad step; the workdir keeps the last
      finite checkpoint, the model holds the diverged parameters. 'record':
      end training there and return the history with that epoch last (its
      `train_loss` non-finite). With a workdir, the epoch enters the record
      but its arrays are not written: the record points at the previous
      epoch's, so `checkpoint.discard_last_epoch(workdir)` undoes it, and
      `fit` refuses to resume until it has been undone.
    data_id: what identifies the training data in the checkpoint record;
      `checkpoint.data_fingerprint(x_train, y_train)` by default. Callers
      that train on freshly augmented data every epoch pass the fingerprint
      of the source data instead; callers that train on a stream pass what
      defines it (e.g. the problem's key), since a function has no
      fingerprint.
    steps_per_epoch: the SGD steps of an epoch, with a stream only (there
      is no data set size to derive them from).
    stop_fn: `stop_fn(history) -> bool`, asked after each epoch (and on the
      history of a resumed run, before training further): True ends
      training, e.g. at a plateau of the evaluation loss. A function of the
      history only, so a resumed run stops where an uninterrupted one did.
    rate_fn: `rate_fn(history) -> learning rate` of the next epoch, asked
      before each epoch (with the history so far, empty before the first):
      e.g. a decay on a validation plateau. It sets every `learning_rate`
      that `optax.inject_hyperparams` put in the optimizer state (build
      `tx` with `make_optimizer`), so the rate is checkpointed with the
      state and the compiled step is reused. A function of the history
      only, so a resumed run follows the same rates.
    restore_best: end with the model of the epoch with the lowest
      evaluation loss (the first, on ties) instead of the last one's; needs
      `x_eval`. The model `fit` starts from is evaluated first and counts
      as epoch 0, so training that only made it worse returns it unchanged.
      Why: a run stopped at a plateau (`stop_fn`) ends `patience` noisy
      epochs after its best, and a high rate can leave a good start for
      worse at once. With a workdir, the best epoch's arrays are kept for a
      resumed run (the start's as epoch 0, its evaluation in the record),
      and the final checkpoint holds the model `fit` returns (its optimizer
      state stays the last epoch's). Not after an epoch that diverged (see
      `on_nonfinite_loss`): that checkpoint is left for
      `checkpoint.discard_last_epoch`.

  Returns:
    `FitResult(model, history, initial_evaluation)`.

  Raises:
    ValueError: bad settings, or NaN or infinite data (before training).
    divergence.DivergedError: see `on_nonfinite_loss`.
  """
  mesh = _check_mesh(mesh)
  _check_config(config, mesh.size)
  key = _as_typed_key(key)
  if on_nonfinite_loss not in NONFINITE_LOSS_POLICIES:
    raise ValueError(f'on_nonfinite_loss must be one of '
                     f'{NONFINITE_LOSS_POLICIES}, got {on_nonfinite_loss!r}.')
  streaming = callable(x_train)
  if streaming:
    if y_train is not None:
      raise ValueError('y_train must be None when x_train is a batch '
                       'function (it returns the targets).')
    if steps_per_epoch is None:
      raise ValueError('steps_per_epoch is required when x_train is a batch '
                       'function.')
    steps_per_epoch = validation.check_int_in_range(
        'steps_per_epoch', steps_per_epoch, 1, 2**31 - 1)
    num_examples = None
    if isinstance(x_train, jax.tree_util.Partial):
      stream_chunk = functools.partial(_stream_chunk, x_train)
    else:
      stream_chunk = jax.jit(jax.vmap(x_train))
  else:
    if steps_per_epoch is not None:
      raise ValueError('steps_per_epoch is only for a batch function; with '
                       'arrays it is num_examples // batch_size.')
    if y_train is None:
      raise ValueError('y_train is required with training arrays.')
    x_train, y_train = np.asarray(x_train), np.asarray(y_train)
    for name, array in (('x_train', x_train), ('y_train', y_train)):
      divergence.check_training_data(name, array)
    num_examples = len(x_train)
    if len(y_train) != num_examples:
      raise ValueError(f'x_train has {num_examples} examples, y_train '
                       f'{len(y_train)}.')
    if num_examples < config.batch_size:
      raise ValueError(f'batch_size={config.batch_size} exceeds the '
                       f'{num_examples} training examples.')
    steps_per_epoch = num_examples // config.batch_size
  for name, array in (('x_eval', x_eval), ('y_eval', y_eval)):
    if array is not None:
      divergence.check_training_data(name, np.asarray(array))
  if (x_eval is None) != (y_eval is None):
    raise ValueError('give both x_eval and y_eval, or neither.')
  if restore_best and x_eval is None:
    raise ValueError('restore_best needs x_eval and y_eval: the best epoch '
                     'is the one with the lowest evaluation loss.')
  if tx is None:
    tx = make_optimizer('sgd', PAPER_LEARNING_RATE)
  model.train()
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  if data_id is None:
    data_id = ('stream' if streaming
               else checkpoint.data_fingerprint(x_train, y_train))
  run = checkpoint.RunRecord(config, key, num_examples, data_id,
                   steps_per_epoch if streaming else None)
  history = []
  if workdir is not None and checkpoint.has_checkpoint(workdir):
    history = [EpochRecord(**epoch) for epoch in
               checkpoint.restore(workdir, model, optimizer, run)]
    logging.info('Resuming from %s after epoch %d.', workdir, len(history))
  # The epoch with the lowest evaluation loss so far (0: the start) and its
  # model arrays.
  initial = best_epoch = best_arrays = None
  if restore_best:
    if history:
      initial = Evaluation(**checkpoint.initial_evaluation(workdir))
      best_epoch, best_loss = 0, initial.loss
      for record in history:
        if record.eval_loss is not None and record.eval_loss < best_loss:
          best_epoch, best_loss = record.epoch, record.eval_loss
      best_arrays = checkpoint.epoch_model_arrays(workdir, best_epoch)
    else:
      initial = evaluate(model, x_eval, y_eval, loss_fn=loss_fn,
                         metric_fn=metric_fn,
                         batch_size=config.eval_batch_size, mesh=mesh)
      best_epoch, best_loss = 0, initial.loss
      best_arrays = checkpoint.flatten_state(nnx.state({'model': model}))
      if workdir is not None:
        checkpoint.save_initial(workdir, model, optimizer)
  ended_diverged = False

  # At most PROGRESS_CHUNKS dispatches per epoch (two compiled chunk sizes).
  steps_per_chunk = -(-steps_per_epoch // PROGRESS_CHUNKS)
  replicated = _replicated(mesh)
  chunk_sharded = jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec(None, DATA_AXIS))
  graphdef, state = nnx.split((model, optimizer))
  try:
    for epoch in range(len(history), config.num_epochs):
      if stop_fn is not None and history and stop_fn(history):
        break
      if rate_fn is not None:
        set_learning_rate(optimizer, rate_fn(history))
      start_time = time.perf_counter()
      sigma = sigma_at_epoch(config, epoch)
      if not models.set_helu_sigma(model, sigma):
        sigma = None
      state = jax.device_put(nnx.state((model, optimizer)), replicated)
      if not streaming:
        order = np.asarray(jax.random.permutation(
            jax.random.fold_in(key, epoch), num_examples))
      losses = []
      # Steps run in chunks of one `train_steps` scan each; the bar counts
      # steps at chunk ends (showing the loss would sync every chunk).
      # disable=None hides it when stderr is not a terminal (logs, CI).
      with tqdm.tqdm(total=steps_per_epoch, leave=False,
                     disable=None if progress else True,
                     desc=f'epoch {epoch + 1}/{config.num_epochs}') as bar:
        for start in range(0, steps_per_epoch, steps_per_chunk):
          stop = min(start + steps_per_chunk, steps_per_epoch)
          if streaming:
            inputs, targets = stream_chunk(
                jnp.arange(start, stop) + epoch * steps_per_epoch)
          else:
            indices = order[start * config.batch_size:
                            stop * config.batch_size].reshape(stop - start, -1)
            inputs, targets = x_train[indices], y_train[indices]
          state, chunk_losses = train_steps(
              graphdef, state, jax.device_put(inputs, chunk_sharded),
              jax.device_put(targets, chunk_sharded), loss_fn)
          losses.append(chunk_losses)
          bar.update(stop - start)
      nnx.update((model, optimizer), state)
      epoch_losses = np.asarray(jnp.concatenate(losses))
      diverged = divergence.epoch_divergence(
          epoch_losses, model, epoch, steps_per_epoch, workdir,
          checkpointed_epochs=len(history))
      if diverged is not None and on_nonfinite_loss == 'raise':
        raise diverged
      ended_diverged = diverged is not None
      evaluation = Evaluation(None, {})
      if x_eval is not None and diverged is None:
        evaluation = evaluate(model, x_eval, y_eval, loss_fn=loss_fn,
                              metric_fn=metric_fn,
                              batch_size=config.eval_batch_size, mesh=mesh)
        if restore_best and evaluation.loss < best_loss:
          best_epoch, best_loss = epoch + 1, evaluation.loss
          best_arrays = checkpoint.flatten_state(nnx.state({'model': model}))
      record = EpochRecord(
          epoch=epoch + 1, step=(epoch + 1) * steps_per_epoch, sigma=sigma,
          train_loss=float(np.mean(epoch_losses)),
          eval_loss=evaluation.loss, eval_metrics=evaluation.metrics,
          seconds=time.perf_counter() - start_time)
      history.append(record)
      _log(record, config.num_epochs)
      if diverged is not None:
        logging.warning('%s Recorded (on_nonfinite_loss=%r).', diverged,
                        on_nonfinite_loss)
      if workdir is not None:
        checkpoint.save(workdir, model, optimizer, run, history,
                        diverged=diverged is not None, keep_epoch=best_epoch,
                        initial_evaluation=_as_record(initial))
      if callback is not None:
        callback(record)
      if diverged is not None:
        break
  finally:
    # train_step donates its input state: leave the model holding the newest
    # arrays even when the loop is interrupted.
    nnx.update((model, optimizer), state)
  if (restore_best and history and best_epoch != history[-1].epoch
      and not ended_diverged):
    checkpoint.load_model_arrays(model, best_arrays, f'epoch {best_epoch}')
    if workdir is not None:
      checkpoint.save(workdir, model, optimizer, run, history,
                      keep_epoch=best_epoch,
                      initial_evaluation=_as_record(initial))
  return FitResult(model, history, initial)


def _as_record(evaluation: Evaluation | None) -> dict[str, Any] | None:
  return None if evaluation is None else evaluation._asdict()


def set_learning_rate(optimizer: nnx.Optimizer, learning_rate: float
                      ) -> int:
  """Sets every injected `learning_rate` hyperparameter of the optimizer.

  Args:
    optimizer: an optimizer over a `make_optimizer` (or any
      `optax.inject_hyperparams`) transformation.
    learning_rate: the new rate, positive.

  Returns:
    The number of rates set.

  Raises:
    ValueError: the rate is not positive, or the state holds no injected
      rate (the transformation was not built by `make_optimizer`).
  """
  validation.check_positive('learning_rate', learning_rate)
  found = 0
  for path, variable in nnx.to_flat_state(nnx.state(optimizer)):
    if (len(path) >= 2 and path[-2:] == ('hyperparams', 'learning_rate')
        and not callable(variable.get_value())):
      variable.set_value(jnp.asarray(learning_rate,
                                     variable.get_value().dtype))
      found += 1
  if not found:
    raise ValueError('The optimizer state holds no injected learning_rate: '
                     'build tx with train.make_optimizer.')
  return found


def _log(record: EpochRecord, num_epochs: int) -> None:
  parts = [f'epoch {record.epoch}/{num_epochs}', f'step {record.step}',
           f'train loss {record.train_loss:.6g}']
  if record.sigma is not None:
    parts.append(f'sigma {record.sigma:.3g}')
  if record.eval_loss is not None:
    parts.append(f'eval loss {record.eval_loss:.6g}')
  parts += [f'{name} {value:.6g}' for name, value in
            record.eval_metrics.items()]
  parts.append(f'{record.seconds:.1f} s')
  logging.info(', '.join(parts))
