"""Non-finite numbers in training: refused up front, detected after an epoch.

`train.fit` refuses training data holding NaN or inf (or complex or object
arrays) before it trains (`check_training_data`), and checks after every
epoch that the losses and the parameters are finite (`epoch_divergence`):
an epoch that diverged raises (or records) a `DivergedError` naming the
epoch and the first bad step, before anything of it is checkpointed;
`l0enc.checkpoint` refuses to write non-finite arrays whoever asks.
"""

import os

from flax import nnx
import jax.numpy as jnp
import numpy as np

from l0enc import validation


class DivergedError(FloatingPointError):
  """The training loss or the parameters became NaN or infinite.

  Attributes:
    epoch: the epoch (1-based) in which it happened.
    step: the first SGD step (1-based, counted over the whole run) whose loss
      was non-finite, or the epoch's last step if only the parameters were.
  """

  def __init__(self, message: str, epoch: int, step: int):
    super().__init__(message)
    self.epoch, self.step = epoch, step


def check_training_data(name: str, array: np.ndarray) -> None:
  """Refuses complex, object or non-finite training data, naming `name`."""
  if np.iscomplexobj(array):
    raise ValueError(f'{name} must be real, got dtype {array.dtype}.')
  if array.dtype == object:
    raise ValueError(f'{name} must be a numeric array, got dtype object.')
  validation.check_finite(name, array)


def first_nonfinite_parameter(model: nnx.Module) -> str | None:
  """The path of a parameter holding NaN or inf entries, or None."""
  for path, value in nnx.to_flat_state(nnx.state(model, nnx.Param)):
    value = value.get_value()
    if jnp.issubdtype(value.dtype, jnp.inexact) and not bool(
        jnp.all(jnp.isfinite(value))):
      return '/'.join(map(str, path))
  return None


def epoch_divergence(losses: np.ndarray, model: nnx.Module, epoch: int,
                     steps_per_epoch: int, workdir: str | os.PathLike | None,
                     checkpointed_epochs: int) -> DivergedError | None:
  """A `DivergedError` if the epoch's losses or the parameters are not finite.

  Args:
    losses: the epoch's per-step losses.
    model: the model after the epoch.
    epoch: 0-based epoch.
    steps_per_epoch: SGD steps per epoch.
    workdir: fit's workdir, for the message.
    checkpointed_epochs: the epochs the workdir holds, for the message.

  Returns:
    The error to raise or record, or None if everything is finite.
  """
  bad_steps = np.flatnonzero(~np.isfinite(losses))
  parameter = None if bad_steps.size else first_nonfinite_parameter(model)
  if not bad_steps.size and parameter is None:
    return None
  if bad_steps.size:
    step = epoch * steps_per_epoch + int(bad_steps[0]) + 1
    what = (f'the training loss became {losses[bad_steps[0]]} at step {step} '
            f'(step {int(bad_steps[0]) + 1} of the epoch)')
  else:
    step = (epoch + 1) * steps_per_epoch
    what = f'parameter {parameter} became non-finite by step {step}'
  kept = ('' if workdir is None else
          f' Nothing of this epoch was checkpointed: {workdir} holds epoch '
          f'{checkpointed_epochs}.')
  return DivergedError(
      f'Training diverged in epoch {epoch + 1}: {what}.{kept} Lower the '
      'learning rate, clip the gradients or check the data.',
      epoch=epoch + 1, step=step)
