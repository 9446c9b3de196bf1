"""Stage-wise and end-to-end training of unrolled encoders on a data stream.

The recipe of the LISTA-CPSS and ALISTA codes (Chen et al. 2018, Liu et al.
2019; their `setup_sc_training`): for stage t = 1..K, the loss is that of
stage t's own output, `||z_t - a||^2`, and training runs in phases

  1. the parameters new in stage t alone, at the base rate;
  2. all the parameters of stages 1..t at 0.2 x the base rate;
  3. the same at 0.02 x the base rate;

and each parameter first trained in an earlier stage s carries a multiplier
`stage_decay^(t-s)` (decayed after each stage). The codes apply it to the
gradient before Adam (`get_train_op`), whose normalization undoes a constant
factor: every stage so far steps at the phase's rate until its scaled
gradient nears Adam's epsilon (`stage_decay_target='gradient'`); the literal
reading, `'rate'` (our default), scales the steps, so a stage trained three
stages ago moves at 0.3^3 = 2.7 % of the rate. Each phase ends when the
validation loss has not improved for `patience` evaluations (a plateau), or
after `max_epochs` of them.
`train_end_to_end` is the plain alternative: the last stage's loss, all
parameters, the same base -> x0.2 -> x0.02 phases. Our variants, off by
default (`StagewiseConfig`): steps relative to each parameter's size, new
stages started as a copy of the trained stage before, phases ended at their
best validation.

Every phase is one call of `l0enc.train.fit` on a stream of fresh batches
(`batch_fn(step)`, e.g. `l0enc.synthetic.synthetic_batch`), with the steps
numbered across phases so that no batch repeats. The rates are an
`optax.inject_hyperparams(optax.adam)` base rate chained with a fixed
per-stage multiplier of each parameter slice (zero for parameters the phase
does not train); an encoder tells which stage each parameter slice belongs
to through `parameter_stages()` (see `l0enc.models` and `l0enc.lista`) and
runs its first t stages with `encoder(x, num_stages=t)`.

Resuming (`workdir`): each phase checkpoints in its own subdirectory
(`fit`'s checkpoints), and `stagewise.json` records the finished phases.
A run killed at any point and restarted with the same arguments continues
where it stopped and ends with the same parameters as an uninterrupted run;
the directories of finished phases are removed once a later phase has
finished, so disk use stays at about two checkpoints.
"""

from collections.abc import Mapping, Sequence
import functools
import os
import shutil
from typing import Any, NamedTuple

from absl import logging
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from l0enc import checkpoint
from l0enc import metrics
from l0enc import reporting
from l0enc import train
from l0enc import validation

PROGRESS_RECORD = 'stagewise.json'
_FORMAT = 1


class StagewiseConfig(NamedTuple):
  """Settings of the phases; the defaults are the LISTA-CPSS code's.

  Attributes:
    learning_rate: the base Adam rate (the papers' 5e-4).
    refine_decays: the rates of the refinement phases, as multiples of the
      base rate (the papers' 0.2 and 0.02).
    stage_decay: the factor applied to the rates of every parameter trained
      so far after each stage (the papers' `decay_rate`, 0.3).
    steps_per_epoch: SGD steps between two validations.
    patience: validations without improvement that end a phase.
    min_relative_improvement: an improvement smaller than this fraction of
      the best validation loss so far does not count.
    max_epochs: the most validations in a phase.
    phase_sigmas: the HELU_sigma of the new-stage phase and of each
      refinement phase (for encoders with HELU neurons): finer ramps as the
      rate drops.
    compile_per_stage: run only stages 1..t in the phases of stage t, with
      one compiled step per stage, instead of all K stages in one step
      shared by every phase. The later stages get no gradient either way:
      the loss and its gradients agree up to rounding (Adam can turn a
      gradient entry at rounding level into a full step, so trained
      encoders agree in quality, not to the digit). Worth it for long
      phases: stage t costs t / K of a full pass, about half on average,
      for K compilations.
    relative_steps: multiply every update by the size of what it updates:
      for parameters of rank >= 2, the RMS over all but the leading axis
      (each stage's matrix of a per-stage parameter, each row of a shared
      one); for scalars and vectors, the magnitude of each entry. Adam's
      steps are otherwise about `rate` in every entry, whatever its scale;
      per-stage thresholds that fall by two orders of magnitude over the
      stages (ALISTA's) then move by the same fraction of themselves at
      every stage instead of crossing zero at the last ones. A slice that
      is exactly zero stays zero.
    new_stage_init: where the parameters of stage t start its new-stage
      phase: 'as_built' (the papers': as the encoder was built, for the
      encoders built from an iteration one more ISTA/IHT step) or
      'previous_stage' (our variant, `copy_previous_stage`: a copy of stage
      t - 1's trained slices). Why: the untied LISTA and Deep l0 encoders
      share W across the stages, so a new stage built as an ISTA step pairs
      the trained W with the untrained `S_t = I - mu D^T D`. It no longer
      maps the code reached so far to itself (`W D a + S_t a != a`), starts
      far above the error of the stage before it, and stage-wise training
      stalls (LISTA on the 250 x 500 benchmark: new stages start near 0 dB
      and the NMSE stops falling after about stage 9). A copy of the trained stage
      t - 1 starts stage t at one more step of the stage before.
    stage_decay_target: where the multipliers `stage_decay^(t-s)` act:
      'rate' (the literal reading of the papers' `decay_rate`: each update
      scaled after Adam, so earlier stages all but freeze within a few
      stages) or 'gradient' (what the LISTA-CPSS and ALISTA codes do,
      `get_train_op`: the gradient scaled before Adam. Adam divides by the
      gradient's RMS, so the factor cancels until the scaled gradient nears
      `adam_eps`; stage s then steps at the full rate until `stage_decay^
      (t-s)` times its gradient is that small, after about 15 stages for
      the codes' loss).
    adam_eps: Adam's epsilon (optax's 1e-8). The codes' 1e-8 is on
      `tf.nn.l2_loss`, half the sum over a batch of B signals, which is B/2
      times our loss (`l0enc.train.squared_error_loss`, the mean over the
      batch): their epsilon is `1e-8 / (B / 2)` on ours, where it matters
      only with `stage_decay_target='gradient'`.
    restore_best: end every phase with the parameters of its epoch with the
      lowest validation loss, the phase's start counting as epoch 0,
      instead of its last epoch's (`l0enc.train.fit(restore_best=True)`);
      ours, the papers' codes keep the last. A phase ends `patience` epochs
      after its best, and at a high rate a good start can get worse at
      once: with LISTA in the long preset, the first validation of a new
      stage started as a copy was up to 4 dB above where the stage before
      ended (more in later stages), and the first end-to-end phase of the
      trained encoder ended 11 dB above its start.
  """
  learning_rate: float = 5e-4
  refine_decays: tuple[float, ...] = (0.2, 0.02)
  stage_decay: float = 0.3
  steps_per_epoch: int = 100
  patience: int = 5
  min_relative_improvement: float = 1e-3
  max_epochs: int = 100
  phase_sigmas: tuple[float, ...] = (0.2, 0.05, 0.01)
  compile_per_stage: bool = False
  relative_steps: bool = False
  new_stage_init: str = 'as_built'
  restore_best: bool = False
  stage_decay_target: str = 'rate'
  adam_eps: float = 1e-8


NEW_STAGE_INITS = ('as_built', 'previous_stage')
STAGE_DECAY_TARGETS = ('rate', 'gradient')


class Phase(NamedTuple):
  """One call of `fit`: the stages run, the rates, the sigma.

  Attributes:
    name: e.g. 'stage_03_refine_1'; also the name of its checkpoint folder.
    num_stages: the stage whose output the loss compares with the targets.
    learning_rate: the base rate of the phase.
    multipliers: `{parameter name: multiplier}`, a float or one per slice
      along the parameter's leading axis; 0 freezes.
    sigma: HELU_sigma during the phase.
    copy_previous_stage: set stage `num_stages`' parameters to stage
      `num_stages - 1`'s before the phase (`copy_previous_stage`).
  """
  name: str
  num_stages: int
  learning_rate: float
  multipliers: dict[str, Any]
  sigma: float
  copy_previous_stage: bool = False


class PhaseRecord(NamedTuple):
  """What a finished phase did.

  Attributes:
    name: the phase's name.
    num_stages: the stage trained on its own loss.
    learning_rate: the base rate.
    first_step: the stream step the phase started at.
    steps: SGD steps the phase ran.
    epochs: validations.
    best_eval_loss: the lowest validation loss.
    final_eval_loss: the validation loss of the parameters the phase ends
      with (the last epoch's, or with `restore_best` the best one's, the
      start included).
    final_eval_nmse_db: their NMSE (dB) of stage `num_stages` on the
      validation set.
    eval_nmse_db: that NMSE after each epoch (the training curve).
    seconds: wall time of the phase's epochs (over all runs, if resumed).
  """
  name: str
  num_stages: int
  learning_rate: float
  first_step: int
  steps: int
  epochs: int
  best_eval_loss: float
  final_eval_loss: float
  final_eval_nmse_db: float
  eval_nmse_db: list[float]
  seconds: float


class StagewiseResult(NamedTuple):
  """Result of `train_stagewise` / `train_end_to_end`.

  Attributes:
    model: the trained encoder (the one passed in, updated in place).
    phases: one `PhaseRecord` per phase, in order.
  """
  model: nnx.Module
  phases: list[PhaseRecord]


class TrainedStage(nnx.Variable):
  """The stage whose output a phase trains on: model state, not a `Param`."""


class _StageOutput(nnx.Module):
  """The output of stage `stage` of the encoder, as a model for `fit`.

  The stage is state, not a static attribute, so that every phase of a run
  shares one compiled training step: the encoder runs all its stages and
  the stage's codes are picked from the stacked outputs (the later stages
  get no gradient). Compiling a truncated encoder per stage costs more
  than the extra stages on a CPU at the sizes of the standard problem.
  """

  def __init__(self, encoder: nnx.Module, stage: int):
    self.encoder = encoder
    self.stage = TrainedStage(jnp.asarray(stage, jnp.int32))

  def set_stage(self, stage: int) -> None:
    self.stage[...] = jnp.asarray(stage, jnp.int32)

  def __call__(self, x: jax.Array) -> jax.Array:
    all_stages = self.encoder(x, return_all_stages=True)
    return jax.lax.dynamic_index_in_dim(all_stages, self.stage[...] - 1,
                                        keepdims=False)


class _TruncatedOutput(nnx.Module):
  """The encoder's first `stage` stages, the stage a static attribute.

  A new stage is a new graph, hence one compiled step per stage
  (`StagewiseConfig.compile_per_stage`).
  """

  def __init__(self, encoder: nnx.Module, stage: int):
    self.encoder = encoder
    self.stage = int(stage)

  def set_stage(self, stage: int) -> None:
    self.stage = int(stage)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.encoder(x, num_stages=self.stage)


def stage_model(encoder: nnx.Module, stage: int,
                config: StagewiseConfig) -> nnx.Module:
  """The model a phase of stage `stage` trains: the encoder's stage output.

  Its state is what the phase's checkpoints hold, so it also restores a
  trained encoder from one (`l0enc.checkpoint.restore_model(phase_dir,
  stage_model(encoder, stage, config))`).

  Args:
    encoder: an unrolled encoder; the model shares its parameters.
    stage: the stage whose output the model returns.
    config: the settings (`compile_per_stage` picks the form).

  Returns:
    An `nnx.Module` mapping signals to the codes of stage `stage`.
  """
  cls = _TruncatedOutput if config.compile_per_stage else _StageOutput
  return cls(encoder, stage)


class _PhaseSettings:
  """The base rate and multipliers of the current phase, read at init."""

  def __init__(self):
    self.phase: Phase | None = None


def _nmse_metric(outputs: jax.Array, targets: jax.Array) -> dict[str, Any]:
  return {'nmse_db': metrics.nmse_db(outputs, targets)}


def check_config(config: StagewiseConfig) -> None:
  """Raises a `ValueError` naming the first bad field of `config`."""
  validation.check_positive('learning_rate', config.learning_rate)
  for decay in config.refine_decays:
    validation.check_positive('refine_decays', decay)
  if not 0 <= config.stage_decay <= 1:
    raise ValueError(f'stage_decay must be in [0, 1], got '
                     f'{config.stage_decay}.')
  validation.check_int_in_range('steps_per_epoch', config.steps_per_epoch, 1,
                                2**31 - 1)
  validation.check_int_in_range('patience', config.patience, 1, 2**31 - 1)
  validation.check_int_in_range('max_epochs', config.max_epochs, 1, 2**31 - 1)
  validation.check_nonnegative('min_relative_improvement',
                               config.min_relative_improvement)
  if len(config.phase_sigmas) != 1 + len(config.refine_decays):
    raise ValueError(f'phase_sigmas needs one sigma per phase of a stage '
                     f'({1 + len(config.refine_decays)}), got '
                     f'{len(config.phase_sigmas)}.')
  for sigma in config.phase_sigmas:
    if not 0 <= sigma < 1:
      raise ValueError(f'phase_sigmas must be in [0, 1), got {sigma}.')
  if config.new_stage_init not in NEW_STAGE_INITS:
    raise ValueError(f'new_stage_init must be one of {NEW_STAGE_INITS}, got '
                     f'{config.new_stage_init!r}.')
  validation.check_choice('stage_decay_target', config.stage_decay_target,
                          STAGE_DECAY_TARGETS)
  validation.check_positive('adam_eps', config.adam_eps)


def plateau(history: Sequence[train.EpochRecord], patience: int,
            min_relative_improvement: float = 0.0) -> bool:
  """True once the best evaluation loss is `patience` evaluations old.

  Args:
    history: `fit`'s epoch records, with evaluation losses.
    patience: evaluations without an improvement that make a plateau.
    min_relative_improvement: a loss counts as an improvement only if below
      `(1 - min_relative_improvement)` times the best before it.

  Returns:
    Whether training should stop.
  """
  best, best_index = np.inf, -1
  for index, record in enumerate(history):
    if record.eval_loss < best * (1 - min_relative_improvement):
      best, best_index = record.eval_loss, index
  return len(history) - 1 - best_index >= patience


def _stages_of(encoder: nnx.Module) -> dict[str, Any]:
  if not hasattr(encoder, 'parameter_stages'):
    raise ValueError(f'{type(encoder).__name__} has no parameter_stages(): '
                     'stage-wise training needs an unrolled encoder of '
                     'l0enc.models or l0enc.lista.')
  return encoder.parameter_stages()


def stagewise_phases(encoder: nnx.Module,
                     config: StagewiseConfig = StagewiseConfig()
                     ) -> list[Phase]:
  """The phases of stage-wise training (module docstring), in order.

  A stage without parameters of its own (e.g. of a tied encoder) skips the
  new-stage phase.

  Args:
    encoder: an unrolled encoder with `parameter_stages()`.
    config: the settings.

  Returns:
    The list of `Phase`s.
  """
  check_config(config)
  stages = _stages_of(encoder)
  phases = []
  for t in range(1, encoder.num_stages + 1):
    new = {name: (np.asarray(s) == t).astype(np.float32)
           for name, s in stages.items()}
    if any(np.any(m) for m in new.values()):
      phases.append(Phase(
          f'stage_{t:02d}_new', t, config.learning_rate, new,
          config.phase_sigmas[0],
          copy_previous_stage=(t > 1 and
                               config.new_stage_init == 'previous_stage')))
    # Parameters first trained in stage s <= t, decayed once per stage since.
    trained = {name: np.where(np.asarray(s) <= t,
                              config.stage_decay**(t - np.asarray(s)),
                              0.0).astype(np.float32)
               for name, s in stages.items()}
    for j, decay in enumerate(config.refine_decays):
      phases.append(Phase(f'stage_{t:02d}_refine_{j + 1}', t,
                          config.learning_rate * decay, trained,
                          config.phase_sigmas[j + 1]))
  return phases


def end_to_end_phases(encoder: nnx.Module,
                      config: StagewiseConfig = StagewiseConfig()
                      ) -> list[Phase]:
  """Plain training: all parameters on the last stage's loss, rates decayed.

  Args:
    encoder: an unrolled encoder with `parameter_stages()`.
    config: the settings (`stage_decay` is not used).

  Returns:
    One `Phase` at the base rate, then one per refinement decay.
  """
  check_config(config)
  ones = {name: np.ones_like(np.asarray(s), np.float32)
          for name, s in _stages_of(encoder).items()}
  rates = (1.0,) + tuple(config.refine_decays)
  return [Phase(f'end_to_end_{j}', encoder.num_stages,
                config.learning_rate * rate, ones, sigma)
          for j, (rate, sigma) in enumerate(zip(rates, config.phase_sigmas))]


def copy_previous_stage(encoder: nnx.Module, stage: int) -> None:
  """Sets the slices of stage `stage` to those of stage `stage - 1`.

  Our variant's start of a new stage (`StagewiseConfig.new_stage_init`).
  Only per-stage parameters (an array in `parameter_stages()`) change, and
  only where both stages have a slice: e.g. the untied LISTA's first S is
  stage 2's, so stage 2 keeps its S as built and copies stage 1's
  thresholds.

  Args:
    encoder: an unrolled encoder with `parameter_stages()`; changed in
      place.
    stage: the new stage, `2 <= stage <= encoder.num_stages`.
  """
  validation.check_int_in_range('stage', stage, 2, encoder.num_stages)
  for name, stages in _stages_of(encoder).items():
    stages = np.asarray(stages)
    param = getattr(encoder, name, None)
    if stages.ndim == 0 or not isinstance(param, nnx.Param):
      continue
    target, source = np.flatnonzero(stages == stage), np.flatnonzero(
        stages == stage - 1)
    if target.size and source.size:
      param[...] = param[...].at[target].set(param[...][source])


def _multiplier_tree(params: Any, multipliers: Mapping[str, Any]) -> Any:
  """Per-parameter multipliers shaped to broadcast along the stage axis."""
  def leaf_name(path):
    names = [getattr(key, 'key', getattr(key, 'name', None)) for key in path]
    names = [name for name in names if name in multipliers]
    if not names:
      raise ValueError(f'no stage multiplier for parameter {path}.')
    return names[-1]

  def leaf(path, param):
    factor = jnp.asarray(multipliers[leaf_name(path)], param.dtype)
    return factor.reshape(factor.shape + (1,) * (param.ndim - factor.ndim))

  return jax.tree_util.tree_map_with_path(leaf, params)


class ScaleByStageState(NamedTuple):
  """State of `phase_optimizer`: Adam's (with its injected rate) and the
  per-stage multipliers of every parameter."""
  adam: optax.OptState
  multipliers: Any


def _relative_scale(param: jax.Array) -> jax.Array:
  """The size an update of `param` is measured against
  (`StagewiseConfig.relative_steps`)."""
  if param.ndim <= 1:
    return jnp.abs(param)
  axes = tuple(range(1, param.ndim))
  return jnp.sqrt(jnp.mean(jnp.square(param), axis=axes, keepdims=True))


def phase_optimizer(settings: _PhaseSettings, *,
                    relative_steps: bool = False,
                    stage_decay_target: str = 'rate',
                    adam_eps: float = 1e-8
                    ) -> optax.GradientTransformation:
  """Adam at the phase's base rate with the per-stage multipliers.

  One transformation serves all the phases of a run, so that they share
  one compiled training step: `init` reads the current phase's base rate
  and multipliers from `settings` and puts them in the state (the rate as
  an `optax.inject_hyperparams` hyperparameter), where the step reads
  them as data. Checkpoints save and restore them with the rest.

  Args:
    settings: holds the phase whose optimizer `init` builds.
    relative_steps: scale each update by the size of what it updates
      (`StagewiseConfig.relative_steps`).
    stage_decay_target: 'rate' (the multipliers scale Adam's updates) or
      'gradient' (they scale the gradients Adam sees, as in the papers'
      codes; `StagewiseConfig.stage_decay_target`).
    adam_eps: Adam's epsilon.

  Returns:
    The transformation.
  """
  validation.check_choice('stage_decay_target', stage_decay_target,
                          STAGE_DECAY_TARGETS)
  adam = optax.inject_hyperparams(optax.adam)(learning_rate=1.0,
                                              eps=adam_eps)
  scale = lambda tree, multipliers: jax.tree.map(
      lambda u, m: u * m.astype(u.dtype), tree, multipliers)

  def init(params):
    phase = settings.phase
    state = adam.init(params)
    state.hyperparams['learning_rate'] = jnp.asarray(phase.learning_rate,
                                                     jnp.float32)
    return ScaleByStageState(state, _multiplier_tree(params,
                                                     phase.multipliers))

  def update(updates, state, params=None):
    if stage_decay_target == 'gradient':
      # A zero multiplier (a parameter the phase does not train) gives a
      # zero gradient, hence a zero Adam step.
      updates = scale(updates, state.multipliers)
    updates, adam_state = adam.update(updates, state.adam, params)
    if stage_decay_target == 'rate':
      updates = scale(updates, state.multipliers)
    if relative_steps:
      if params is None:
        raise ValueError('relative_steps needs the parameters in update().')
      updates = jax.tree.map(lambda u, p: u * _relative_scale(p).astype(
          u.dtype), updates, params)
    return updates, ScaleByStageState(adam_state, state.multipliers)

  return optax.GradientTransformation(init, update)


def _config_record(config: StagewiseConfig) -> dict[str, Any]:
  return {k: list(v) if isinstance(v, tuple) else v
          for k, v in config._asdict().items()}


def _run_phases(encoder: nnx.Module, phases: Sequence[Phase],
                batch_fn: train.BatchFn, *, x_eval: Any, y_eval: Any,
                config: StagewiseConfig, workdir: str | os.PathLike | None,
                eval_batch_size: int, progress: bool) -> StagewiseResult:
  if x_eval is None or y_eval is None:
    raise ValueError('x_eval and y_eval are required: phases end on a '
                     'validation plateau.')
  plan = [{'name': p.name, 'num_stages': p.num_stages,
           'learning_rate': p.learning_rate, 'sigma': p.sigma}
          for p in phases]
  plan_record = {'config': _config_record(config), 'plan': plan}
  done: list[PhaseRecord] = []
  if workdir is not None:
    os.makedirs(workdir, exist_ok=True)
    record_path = os.path.join(workdir, PROGRESS_RECORD)
    if os.path.exists(record_path):
      saved = reporting.read_json(record_path)
      if 'run' in saved:
        # A field added to StagewiseConfig since, at its default, is the
        # behaviour the saved run had.
        saved['run']['config'] = {**_config_record(StagewiseConfig()),
                                  **saved['run']['config']}
      if saved.get('format') != _FORMAT or saved.get('run') != plan_record:
        raise ValueError(f'{record_path} is from a different stage-wise run '
                         '(other phases or settings). Use another workdir.')
      done = [PhaseRecord(**r) for r in saved['phases']]
      if done:
        # The model is where the last finished phase left it.
        checkpoint.restore_model(
            os.path.join(workdir, done[-1].name),
            stage_model(encoder, done[-1].num_stages, config))
        logging.info('Resuming stage-wise training in %s after phase %s.',
                     workdir, done[-1].name)

  stop = lambda history: plateau(history, config.patience,
                                 config.min_relative_improvement)
  settings = _PhaseSettings()
  tx = phase_optimizer(settings, relative_steps=config.relative_steps,
                       stage_decay_target=config.stage_decay_target,
                       adam_eps=config.adam_eps)
  model = stage_model(encoder, 1, config)
  for index in range(len(done), len(phases)):
    phase = phases[index]
    settings.phase = phase
    model.set_stage(phase.num_stages)
    if phase.copy_previous_stage:
      # A resumed phase then restores its own checkpoint over the copy.
      copy_previous_stage(encoder, phase.num_stages)
    first_step = sum(r.steps for r in done)
    phase_dir = (None if workdir is None
                 else os.path.join(workdir, phase.name))
    # Steps are numbered across phases: no phase sees another's batches.
    phase_batches = lambda step, first_step=first_step: batch_fn(
        step + first_step)
    result = train.fit(
        model, phase_batches, key=jax.random.key(0),
        config=train.TrainConfig(num_epochs=config.max_epochs,
                                 initial_sigma=phase.sigma, sigma_decay=1.0,
                                 min_sigma=phase.sigma,
                                 eval_batch_size=eval_batch_size),
        tx=tx, metric_fn=_nmse_metric, x_eval=x_eval,
        y_eval=y_eval, workdir=phase_dir, progress=progress,
        steps_per_epoch=config.steps_per_epoch, stop_fn=stop,
        restore_best=config.restore_best)
    history = result.history
    best = min(history, key=lambda r: r.eval_loss)
    final = (history[-1].eval_loss, history[-1].eval_metrics['nmse_db'])
    if config.restore_best:
      # fit ended at the best epoch, or at its start if none beat it.
      start = result.initial_evaluation
      final = ((start.loss, start.metrics['nmse_db'])
               if start.loss <= best.eval_loss
               else (best.eval_loss, best.eval_metrics['nmse_db']))
    record = PhaseRecord(
        name=phase.name, num_stages=phase.num_stages,
        learning_rate=phase.learning_rate, first_step=first_step,
        steps=history[-1].step, epochs=len(history),
        best_eval_loss=best.eval_loss,
        final_eval_loss=final[0],
        final_eval_nmse_db=final[1],
        eval_nmse_db=[r.eval_metrics['nmse_db'] for r in history],
        seconds=sum(r.seconds for r in history))
    done.append(record)
    logging.info('Phase %d/%d %s: %d steps, validation NMSE %.2f dB at '
                 'stage %d.', index + 1, len(phases), phase.name,
                 record.steps, record.final_eval_nmse_db, phase.num_stages)
    if workdir is not None:
      reporting.write_json_atomic(record_path, {
          'format': _FORMAT, 'run': plan_record,
          'phases': [r._asdict() for r in done]})
      # Only the last finished phase's checkpoint is needed to resume.
      for finished in done[:-1]:
        shutil.rmtree(os.path.join(workdir, finished.name),
                      ignore_errors=True)
  return StagewiseResult(encoder, done)


def train_stagewise(encoder: nnx.Module, batch_fn: train.BatchFn, *,
                    x_eval: Any, y_eval: Any,
                    config: StagewiseConfig = StagewiseConfig(),
                    workdir: str | os.PathLike | None = None,
                    eval_batch_size: int = 1024,
                    progress: bool = False) -> StagewiseResult:
  """Stage-wise training (the LISTA-CPSS / ALISTA recipe) on a stream.

  Args:
    encoder: an unrolled encoder with `parameter_stages()` and
      `__call__(x, num_stages=t)`; trained in place.
    batch_fn: `batch_fn(step) -> (signals, target codes)`, pure and
      traceable (see `l0enc.train.fit`).
    x_eval: validation signals, `(num, n)`.
    y_eval: their target codes, `(num, p)`.
    config: the settings.
    workdir: where to checkpoint and resume, or None.
    eval_batch_size: signals per validation batch.
    progress: progress bars over each epoch (on a terminal).

  Returns:
    `StagewiseResult(encoder, phases)`.
  """
  return _run_phases(encoder, stagewise_phases(encoder, config), batch_fn,
                     x_eval=x_eval, y_eval=y_eval, config=config,
                     workdir=workdir, eval_batch_size=eval_batch_size,
                     progress=progress)


def train_end_to_end(encoder: nnx.Module, batch_fn: train.BatchFn, *,
                     x_eval: Any, y_eval: Any,
                     config: StagewiseConfig = StagewiseConfig(),
                     workdir: str | os.PathLike | None = None,
                     eval_batch_size: int = 1024,
                     progress: bool = False) -> StagewiseResult:
  """Plain training on the last stage's loss (`end_to_end_phases`).

  Same arguments and result as `train_stagewise`.
  """
  return _run_phases(encoder, end_to_end_phases(encoder, config), batch_fn,
                     x_eval=x_eval, y_eval=y_eval, config=config,
                     workdir=workdir, eval_batch_size=eval_batch_size,
                     progress=progress)


def stage_nmse_db(encoder: nnx.Module, signals: Any, codes: Any, *,
                  batch_size: int = 1000) -> np.ndarray:
  """The NMSE (dB) of every stage's codes on a data set, evaluation mode.

  Args:
    encoder: an unrolled encoder with `return_all_stages`.
    signals: `(num, n)`.
    codes: the true codes, `(num, p)`.
    batch_size: signals per jitted batch.

  Returns:
    Shape `(num_stages,)`: `10 log10(sum ||z_t - a||^2 / sum ||a||^2)`.
  """
  signals, codes = np.asarray(signals), np.asarray(codes)
  graphdef, state = nnx.split(encoder)
  errors = np.zeros(encoder.num_stages)
  for start in range(0, len(signals), batch_size):
    stop = start + batch_size
    errors += np.asarray(_stage_squared_errors(
        graphdef, state, signals[start:stop], codes[start:stop]))
  return 10 * np.log10(errors / np.sum(codes.astype(np.float64)**2))


@functools.partial(jax.jit, static_argnames=('graphdef',))
def _stage_squared_errors(graphdef: nnx.GraphDef, state: nnx.State,
                          signals: jax.Array, codes: jax.Array) -> jax.Array:
  encoder = nnx.merge(graphdef, state)
  encoder.eval()
  all_stages = encoder(signals, return_all_stages=True)
  return jnp.sum(jnp.square(all_stages - codes),
                 axis=tuple(range(1, all_stages.ndim)))
