"""Checkpoints of `train.fit`: the files of a workdir, written and read back.

A checkpoint of a workdir is two files:

- `state_<epoch>.npz`: every array of the model and optimizer state under
  its path (`model/...`, `optimizer/...`; PRNG keys as raw key data),
  written with `allow_pickle` off;
- `checkpoint.json` (`CHECKPOINT_RECORD`): the epoch, step, sigma, the
  run's settings (`RunRecord`: config, PRNG key, data fingerprint) and the
  history, and the name of the npz file.

Both are written through `reporting.write_binary_atomic` (a temporary file,
then a rename), the record last, so a crash leaves the previous checkpoint
valid. The arrays of the epoch before are kept too, so that
`discard_last_epoch` can undo an epoch that diverged (`save(...,
diverged=True)` records such an epoch without its arrays). A checkpoint
never holds non-finite arrays. A damaged file raises
`validation.DamagedFileError` naming it; a checkpoint of another model,
optimizer, config, key or data raises a `ValueError` that lists every
mismatch (`model/input_weights: float32[12, 20] there, float32[12, 10]
here`, `data_fingerprint: ... there, ... here`).

Why our own format and not Orbax: Orbax reports a restore into another model
as a tree-structure diff or a TensorStore spec, not as the parameter paths,
dtypes and shapes above, and the run's settings and data fingerprint need
checks of their own anyway; the state of these encoders is a few small
arrays (one npz file, no sharded or asynchronous writes needed); and the
workdirs of earlier runs, in this format, must keep resuming.
"""

from collections.abc import Mapping, Sequence
import hashlib
import json
import os
from typing import Any, NamedTuple

from absl import logging
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from l0enc import divergence
from l0enc import reporting
from l0enc import validation

CHECKPOINT_RECORD = 'checkpoint.json'
_CHECKPOINT_FORMAT = 1
# Rows of each array hashed by `data_fingerprint`.
_FINGERPRINT_ROWS = 64
_CHECKPOINT_REMEDY = ('Delete the workdir (or pass another one) to train '
                      'from scratch.')


def data_fingerprint(*arrays: Any) -> str:
  """Shapes, dtypes and a hash of a sample of rows of `arrays`.

  `train.fit` stores it in its checkpoint record and resumes only on data
  with the same fingerprint. The sample is `_FINGERPRINT_ROWS` rows evenly
  spread over each array, so the cost does not grow with the data.

  Args:
    *arrays: arrays with a leading example axis (e.g. x_train, y_train).

  Returns:
    A string like `'(60000, 784) float32; (60000,) int64; sha256 9f2c...'`.
  """
  digest = hashlib.sha256()
  parts = []
  for array in arrays:
    array = np.asarray(array)
    parts.append(f'{array.shape} {array.dtype}')
    rows = (np.unique(np.linspace(0, len(array) - 1, _FINGERPRINT_ROWS)
                      .round().astype(int)) if array.ndim and len(array)
            else slice(None))
    digest.update(f'{array.shape}{array.dtype}'.encode())
    digest.update(np.ascontiguousarray(array[rows]).tobytes())
  return '; '.join(parts + [f'sha256 {digest.hexdigest()[:16]}'])


class RunRecord(NamedTuple):
  """What a checkpoint must agree with to be resumed.

  Attributes:
    config: the `train.TrainConfig` (any NamedTuple of JSON values).
    key: the typed PRNG key of the data order.
    num_examples: training examples, None for a stream.
    data_id: what identifies the training data (e.g. `data_fingerprint`).
    steps_per_epoch: of a stream; None for arrays.
  """
  config: NamedTuple
  key: jax.Array
  num_examples: int | None
  data_id: str
  steps_per_epoch: int | None = None

  def as_json(self) -> dict[str, Any]:
    # num_epochs may grow between runs: resuming trains further.
    record = {**{f'config.{name}': value
                 for name, value in self.config._asdict().items()
                 if name != 'num_epochs'},
              'num_train_examples': self.num_examples,
              'data_fingerprint': self.data_id,
              'key': np.asarray(jax.random.key_data(self.key)).tolist(),
              'key_impl': str(jax.random.key_impl(self.key))}
    if self.steps_per_epoch is not None:
      # Only for streams, so that checkpoints of array runs stay valid.
      record['stream_steps_per_epoch'] = self.steps_per_epoch
    return record


def has_checkpoint(workdir: str | os.PathLike) -> bool:
  """Whether `workdir` holds a checkpoint record."""
  return os.path.exists(os.path.join(workdir, CHECKPOINT_RECORD))


def flatten_state(state: nnx.State) -> dict[str, np.ndarray]:
  """`{'model/input_weights': array, ...}`; PRNG keys become raw key data."""
  arrays = {}
  for path, variable in nnx.to_flat_state(state):
    value = variable.get_value()
    if jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
      value = jax.random.key_data(value)
    arrays['/'.join(map(str, path))] = np.asarray(value)
  return arrays


def unflatten_state(arrays: Mapping[str, np.ndarray], template: nnx.State,
                    source: str) -> nnx.State:
  """The state shaped as `template` with values from `arrays` (checked).

  Args:
    arrays: `flatten_state` of a state like `template`.
    template: the state to fill, e.g. `nnx.state(model)`.
    source: where `arrays` come from, named in the error message.

  Returns:
    A new state; PRNG keys are rewrapped with the template's implementation.

  Raises:
    ValueError: names missing, unexpected, or of another dtype or shape.
  """
  flat_template = list(nnx.to_flat_state(template))
  names = ['/'.join(map(str, path)) for path, _ in flat_template]
  template_arrays = flatten_state(template)
  problems = [f'missing {name}' for name in names if name not in arrays]
  problems += [f'unexpected {name}' for name in arrays
               if name not in template_arrays]
  problems += [
      f'{name}: {arrays[name].dtype}{list(arrays[name].shape)} there, '
      f'{expected.dtype}{list(expected.shape)} here'
      for name, expected in template_arrays.items() if name in arrays
      and (arrays[name].shape, arrays[name].dtype)
      != (expected.shape, expected.dtype)]
  if problems:
    raise ValueError(f'{source} does not match this model and optimizer: '
                     + '; '.join(problems[:10]))
  restored = []
  for name, (path, variable) in zip(names, flat_template):
    value = variable.get_value()
    if jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
      loaded = jax.random.wrap_key_data(arrays[name],
                                        impl=jax.random.key_impl(value))
    else:
      loaded = jnp.asarray(arrays[name])
    restored.append((path, variable.replace(loaded)))
  return nnx.from_flat_state(restored)


def _arrays_name(epoch: int) -> str:
  return f'state_{epoch:06d}.npz'


def _write_record(workdir: str | os.PathLike, record: dict[str, Any]) -> None:
  reporting.write_binary_atomic(
      os.path.join(workdir, CHECKPOINT_RECORD),
      lambda file: file.write(json.dumps(record, indent=1).encode()))


def _read_record(workdir: str | os.PathLike) -> dict[str, Any]:
  path = os.path.join(workdir, CHECKPOINT_RECORD)
  with validation.reading(path, _CHECKPOINT_REMEDY):
    with open(path) as file:
      record = json.load(file)
  if record.get('format') != _CHECKPOINT_FORMAT:
    raise ValueError(f'{workdir}: unknown checkpoint format '
                     f'{record.get("format")!r}.')
  return record


def save(workdir: str | os.PathLike, model: nnx.Module,
         optimizer: nnx.Optimizer, run: RunRecord,
         history: Sequence[NamedTuple], diverged: bool = False,
         keep_epoch: int | None = None,
         initial_evaluation: dict[str, Any] | None = None) -> None:
  """Checkpoints the last epoch of `history`.

  A `diverged` epoch enters the record, but its (non-finite) arrays are not
  written: the record names the previous epoch's arrays (None after a first
  epoch), so that `discard_last_epoch` can undo it.

  Args:
    workdir: the directory, created if needed.
    model: the model after the epoch.
    optimizer: its optimizer.
    run: the run's settings.
    history: the `train.EpochRecord`s so far, the new epoch last.
    diverged: whether the last epoch diverged.
    keep_epoch: an earlier epoch whose arrays are kept as well (`train.fit`
      keeps the best epoch's, `epoch_model_arrays`; 0: those of
      `save_initial`).
    initial_evaluation: the evaluation of the starting model, recorded for
      `initial_evaluation` (`train.fit(restore_best=True)`).

  Raises:
    divergence.DivergedError: an array to write holds NaN or inf
      (`train.fit` checks first; this guards every other caller).
  """
  os.makedirs(workdir, exist_ok=True)
  last = history[-1]
  if diverged:
    arrays_name = (_arrays_name(history[-2].epoch) if len(history) > 1
                   else None)
  else:
    arrays_name = _write_arrays(workdir, model, optimizer, last.epoch,
                                last.step)
  _write_record(workdir, {
      'format': _CHECKPOINT_FORMAT, 'epoch': last.epoch, 'step': last.step,
      'sigma': last.sigma, 'arrays': arrays_name, 'diverged': diverged,
      'run': run.as_json(), 'history': [r._asdict() for r in history],
      'initial_evaluation': initial_evaluation})
  # Only after the record names the new arrays may older ones go; the
  # previous epoch's stay for `discard_last_epoch`.
  previous = _arrays_name(history[-2].epoch) if len(history) > 1 else None
  _remove_arrays(workdir, keep=(arrays_name, previous, None if keep_epoch is
                                None else _arrays_name(keep_epoch)))


def save_initial(workdir: str | os.PathLike, model: nnx.Module,
                 optimizer: nnx.Optimizer) -> None:
  """Writes the arrays of the model training starts from, as epoch 0.

  Not a checkpoint (no record names them): `save(..., keep_epoch=0)` keeps
  them, and `epoch_model_arrays(workdir, 0)` reads them back.

  Args:
    workdir: the directory, created if needed.
    model: the model before training.
    optimizer: its optimizer.
  """
  os.makedirs(workdir, exist_ok=True)
  _write_arrays(workdir, model, optimizer, 0, 0)


def _write_arrays(workdir: str | os.PathLike, model: nnx.Module,
                  optimizer: nnx.Optimizer, epoch: int, step: int) -> str:
  """Writes the arrays of an epoch atomically; returns the file's name."""
  arrays = flatten_state(nnx.state({'model': model, 'optimizer': optimizer}))
  nonfinite = [name for name, array in arrays.items()
               if np.issubdtype(array.dtype, np.inexact)
               and not np.all(np.isfinite(array))]
  if nonfinite:
    raise divergence.DivergedError(
        f'Refusing to checkpoint non-finite arrays {nonfinite[:5]} of '
        f'epoch {epoch}.', epoch=epoch, step=step)
  name = _arrays_name(epoch)
  reporting.write_binary_atomic(
      os.path.join(workdir, name),
      lambda file: np.savez(file, allow_pickle=False, **arrays))
  return name


def initial_evaluation(workdir: str | os.PathLike) -> dict[str, Any]:
  """The starting model's evaluation recorded by `save`.

  Raises:
    ValueError: the checkpoint records none (written without
      `train.fit(restore_best=True)`).
  """
  evaluation = _read_record(workdir).get('initial_evaluation')
  if evaluation is None:
    raise ValueError(f'The checkpoint in {workdir} records no evaluation of '
                     'the starting model: it was written without '
                     'restore_best. Resume it with the same setting.')
  return evaluation


def _remove_arrays(workdir: str | os.PathLike, keep: Sequence[str | None]
                   ) -> None:
  for name in os.listdir(workdir):
    if name.startswith('state_') and name.endswith('.npz') and (
        name not in keep):
      os.remove(os.path.join(workdir, name))


def _read_checkpoint(workdir: str | os.PathLike
                     ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
  record = _read_record(workdir)
  if record.get('diverged'):
    raise ValueError(
        f'The last epoch ({record["epoch"]}) checkpointed in {workdir} '
        'diverged and was recorded without its arrays; undo it with '
        '`checkpoint.discard_last_epoch` first.')
  arrays = validation.load_npz(os.path.join(workdir, record['arrays']),
                               _CHECKPOINT_REMEDY)
  return record, arrays


def restore(workdir: str | os.PathLike, model: nnx.Module,
            optimizer: nnx.Optimizer, run: RunRecord
            ) -> list[dict[str, Any]]:
  """Loads the checkpoint of `workdir` into `model` and `optimizer`.

  Args:
    workdir: a workdir with a checkpoint (`has_checkpoint`).
    model: a model built as the one that was trained; updated in place.
    optimizer: its optimizer, built as in the first run; updated in place.
    run: this run's settings, compared with the checkpoint's.

  Returns:
    The checkpointed history, one dict of `train.EpochRecord` fields per
    epoch.

  Raises:
    ValueError: the checkpoint is of another model, optimizer or run, or
      its last epoch diverged (see `discard_last_epoch`).
    validation.DamagedFileError: a checkpoint file is damaged.
  """
  record, arrays = _read_checkpoint(workdir)
  nodes = {'model': model, 'optimizer': optimizer}
  # The model's structure first: another model usually means other targets,
  # and its message is the more telling one.
  restored = unflatten_state(arrays, nnx.state(nodes),
                             f'The checkpoint in {workdir}')
  saved = record['run']
  if 'data_fingerprint' not in saved:
    # Checkpoints written before fingerprints existed resume unchecked.
    logging.warning('The checkpoint in %s has no data fingerprint; the '
                    'training data cannot be checked.', workdir)
    saved = dict(saved, data_fingerprint=run.data_id)
  mismatches = [f'{field}: {saved.get(field)!r} there, {value!r} here'
                for field, value in run.as_json().items()
                if saved.get(field) != value]
  if mismatches:
    raise ValueError(
        f'The checkpoint in {workdir} is from a different run ('
        + '; '.join(mismatches) + '). Use another workdir or the same '
        'settings.')
  nnx.update(nodes, restored)
  return record['history']


def discard_last_epoch(workdir: str | os.PathLike) -> int:
  """Rolls the checkpoint in `workdir` back by one epoch.

  For an epoch that diverged (say, a non-finite loss): `train.fit` then
  resumes before it, e.g. with a smaller learning rate. Only one epoch can
  be undone: `fit` keeps the arrays of the last two.

  Args:
    workdir: a `fit` working directory with a checkpoint.

  Returns:
    The number of epochs the checkpoint now holds. 0: the checkpoint is
    gone and `fit` starts from the model it is given, so reset its
    parameters first.

  Raises:
    ValueError: no checkpoint, or the previous epoch's arrays are gone.
  """
  if not has_checkpoint(workdir):
    raise ValueError(f'{workdir} holds no checkpoint to roll back.')
  record = _read_record(workdir)
  history = record['history'][:-1]
  if not history:
    # The record goes first: without it the arrays are never read.
    os.remove(os.path.join(workdir, CHECKPOINT_RECORD))
    _remove_arrays(workdir, keep=())
    return 0
  last = history[-1]
  arrays_name = _arrays_name(last['epoch'])
  if not os.path.exists(os.path.join(workdir, arrays_name)):
    raise ValueError(f'{workdir} no longer holds {arrays_name}: only the '
                     'last epoch can be discarded.')
  record.update(epoch=last['epoch'], step=last['step'], sigma=last['sigma'],
                arrays=arrays_name, diverged=False, history=history)
  _write_record(workdir, record)
  _remove_arrays(workdir, keep=(arrays_name,))
  return len(history)


def _model_arrays(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  return {name: array for name, array in arrays.items()
          if name.startswith('model/')}


def epoch_model_arrays(workdir: str | os.PathLike, epoch: int
                       ) -> dict[str, np.ndarray]:
  """The model arrays of a kept epoch (`save(..., keep_epoch=epoch)`).

  Args:
    workdir: a `fit` working directory.
    epoch: the last epoch, the one before it, or the kept one.

  Returns:
    `flatten_state({'model': model})` of that epoch.

  Raises:
    validation.DamagedFileError: the epoch's arrays are missing or damaged.
  """
  return _model_arrays(validation.load_npz(
      os.path.join(workdir, _arrays_name(epoch)), _CHECKPOINT_REMEDY))


def load_model_arrays(model: nnx.Module, arrays: Mapping[str, np.ndarray],
                      source: str) -> nnx.Module:
  """Loads `flatten_state({'model': ...})` arrays into `model` (checked).

  Args:
    model: a model built as the one the arrays are of; updated in place.
    arrays: the arrays, under 'model/...' names.
    source: where they come from, named in the error message.

  Returns:
    `model`.
  """
  nodes = {'model': model}
  nnx.update(nodes, unflatten_state(arrays, nnx.state(nodes), source))
  return model


def restore_model(workdir: str | os.PathLike, model: nnx.Module
                  ) -> nnx.Module:
  """Loads the parameters of the last checkpoint in `workdir` into `model`.

  Args:
    workdir: a `fit` working directory.
    model: a model built as the one that was trained.

  Returns:
    `model`, updated in place.
  """
  _, arrays = _read_checkpoint(workdir)
  return load_model_arrays(model, _model_arrays(arrays),
                           f'The checkpoint in {workdir}')
