"""Tests of l0enc.stagewise: phases, rates, plateaus, resuming after a kill."""

import json

import chex
from flax import nnx
import optax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l0enc import lista
from l0enc import models
from l0enc import stagewise
from l0enc import synthetic
from l0enc import train

CONFIG = stagewise.StagewiseConfig(learning_rate=3e-3, steps_per_epoch=5,
                                   patience=1, max_epochs=3,
                                   refine_decays=(0.2,),
                                   phase_sigmas=(0.2, 0.05))


def _problem():
  return synthetic.make_synthetic_problem(jax.random.key(0), signal_dim=10,
                                          code_dim=20, batch_size=16,
                                          num_validation=64, num_test=64)


def _batch_fn(problem):
  def batch_fn(step):
    batch = synthetic.synthetic_batch(problem, step)
    return batch.signals, batch.codes
  return batch_fn


def _encoder(kind, problem, num_stages=3):
  if kind == 'lista':
    return models.LISTA.from_dictionary(problem.dictionary, lam=0.1,
                                        num_stages=num_stages, tied=False)
  if kind == 'l0':
    return models.DeepL0Encoder.from_dictionary(
        problem.dictionary, lam=0.02, num_stages=num_stages, tied=False,
        support_selection=True)
  return lista.ALISTA(problem.dictionary, num_stages=num_stages)


def _params(model):
  return jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model,
                                                             nnx.Param)))


def test_stagewise_phases_follow_the_recipe():
  problem = _problem()
  encoder = _encoder('lista', problem)
  config = stagewise.StagewiseConfig(learning_rate=1e-3, stage_decay=0.5)
  phases = stagewise.stagewise_phases(encoder, config)
  assert [p.name for p in phases[:3]] == [
      'stage_01_new', 'stage_01_refine_1', 'stage_01_refine_2']
  assert len(phases) == 9
  assert [p.learning_rate for p in phases[3:6]] == pytest.approx(
      [1e-3, 2e-4, 2e-5])
  new, refine = phases[3].multipliers, phases[4].multipliers
  # Stage 2's own parameters: S_2 (slice 0 of the K - 1 recurrent ones) and
  # theta_2; W belongs to stage 1.
  np.testing.assert_array_equal(new['recurrent_weights'], [1, 0])
  np.testing.assert_array_equal(new['threshold'], [0, 1, 0])
  assert new['input_weights'] == 0
  # Refinement: stages 1..2, the earlier one's rate decayed once.
  np.testing.assert_allclose(refine['threshold'], [0.5, 1, 0])
  np.testing.assert_allclose(refine['recurrent_weights'], [1, 0])
  assert refine['input_weights'] == 0.5
  ends = stagewise.end_to_end_phases(encoder, config)
  assert [p.num_stages for p in ends] == [3, 3, 3]
  np.testing.assert_array_equal(ends[0].multipliers['threshold'], [1, 1, 1])


def test_frozen_parameters_do_not_move_and_rates_are_in_the_state():
  problem = _problem()
  encoder = _encoder('lista', problem)
  before = _params(encoder)
  phase = stagewise.stagewise_phases(encoder, CONFIG)[0]  # Stage 1, new.
  settings = stagewise._PhaseSettings()
  settings.phase = phase
  model = stagewise._StageOutput(encoder, 1)
  optimizer = nnx.Optimizer(model, stagewise.phase_optimizer(settings),
                            wrt=nnx.Param)
  assert float(optimizer.opt_state.adam.hyperparams['learning_rate'][...]) \
      == pytest.approx(CONFIG.learning_rate)
  x, codes = _batch_fn(problem)(0)
  grads = nnx.grad(lambda m: train.squared_error_loss(m(x), codes))(model)
  optimizer.update(model, grads)
  after = _params(encoder)
  assert not np.array_equal(after['input_weights'], before['input_weights'])
  assert not np.array_equal(after['threshold'][0], before['threshold'][0])
  np.testing.assert_array_equal(after['threshold'][1:],
                                before['threshold'][1:])
  np.testing.assert_array_equal(after['recurrent_weights'],
                                before['recurrent_weights'])


def test_stage_output_is_the_stage_of_the_encoder():
  problem = _problem()
  encoder = _encoder('alista', problem)
  model = stagewise._StageOutput(encoder, 2)
  x = problem.test.signals
  chex.assert_trees_all_close(model(x), encoder(x, num_stages=2), atol=1e-6)


def test_plateau():
  records = [train.EpochRecord(i + 1, i, None, 0.0, loss, {}, 0.0)
             for i, loss in enumerate([3.0, 2.0, 2.5, 1.99, 2.1])]
  assert not stagewise.plateau(records[:3], patience=2)
  assert stagewise.plateau(records[:3], patience=1)
  assert not stagewise.plateau(records[:4], patience=1)
  # 1.99 is not a 1 % improvement on 2.0.
  assert stagewise.plateau(records[:4], patience=2,
                           min_relative_improvement=0.01)


@pytest.mark.parametrize('kind', ['alista', 'l0'])
def test_per_stage_losses_decrease(kind):
  problem = _problem()
  encoder = _encoder(kind, problem)
  before = stagewise.stage_nmse_db(encoder, problem.test.signals,
                                   problem.test.codes)
  result = stagewise.train_stagewise(
      encoder, _batch_fn(problem), x_eval=problem.validation.signals,
      y_eval=problem.validation.codes, config=CONFIG)
  after = stagewise.stage_nmse_db(encoder, problem.test.signals,
                                  problem.test.codes)
  assert len(result.phases) == 6
  assert np.all(after < before - 0.2), (before, after)
  # Each stage improves on the one before it.
  assert np.all(np.diff(after) < 0), after
  # The phases ran on successive, distinct steps of the stream.
  starts = [p.first_step for p in result.phases]
  assert starts == list(np.cumsum([0] + [p.steps for p in result.phases])[:-1])


def test_relative_steps_scale_adam_by_the_size_of_each_stage_slice():
  problem = _problem()
  encoder = _encoder('lista', problem)  # theta (K, p) and matrices.
  phase = stagewise.end_to_end_phases(encoder, CONFIG)[0]
  settings = stagewise._PhaseSettings()
  settings.phase = phase
  model = stagewise._StageOutput(encoder, encoder.num_stages)
  before = _params(encoder)
  optimizer = nnx.Optimizer(
      model, stagewise.phase_optimizer(settings, relative_steps=True),
      wrt=nnx.Param)
  x, codes = _batch_fn(problem)(0)
  grads = nnx.grad(lambda m: train.squared_error_loss(m(x), codes))(model)
  # Reference: one plain optax Adam step, scaled by hand.
  flat_grads = _params(grads.encoder)
  adam = optax.adam(phase.learning_rate)
  reference, _ = adam.update(flat_grads, adam.init(flat_grads))
  optimizer.update(model, grads)
  after = _params(encoder)
  for name, value in before.items():
    if value.ndim <= 1:
      scale = np.abs(value)
    else:
      scale = np.sqrt(np.mean(value**2, axis=tuple(range(1, value.ndim)),
                              keepdims=True))
    np.testing.assert_allclose(after[name] - value, reference[name] * scale,
                               rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize('target', ['rate', 'gradient'])
def test_stage_decay_scales_the_steps_or_the_gradients(target):
  problem = _problem()
  encoder = _encoder('lista', problem)
  config = CONFIG._replace(stage_decay=0.5, stage_decay_target=target,
                           adam_eps=1e-6)
  phase = stagewise.stagewise_phases(encoder, config)[3]  # Stage 2, refine.
  settings = stagewise._PhaseSettings()
  settings.phase = phase
  model = stagewise._StageOutput(encoder, 2)
  before = _params(encoder)
  optimizer = nnx.Optimizer(model, stagewise.phase_optimizer(
      settings, stage_decay_target=target, adam_eps=config.adam_eps),
                            wrt=nnx.Param)
  x, codes = _batch_fn(problem)(0)
  grads = nnx.grad(lambda m: train.squared_error_loss(m(x), codes))(model)
  optimizer.update(model, grads)
  after = _params(encoder)
  # Reference: plain optax Adam, the multipliers applied by hand.
  flat_grads = _params(grads.encoder)
  factors = {name: np.reshape(
      np.asarray(phase.multipliers[name], np.float32),
      np.shape(phase.multipliers[name]) + (1,) * (
          value.ndim - np.ndim(phase.multipliers[name])))
             for name, value in flat_grads.items()}
  adam = optax.adam(phase.learning_rate, eps=config.adam_eps)
  if target == 'gradient':
    scaled = {name: g * factors[name] for name, g in flat_grads.items()}
    reference, _ = adam.update(scaled, adam.init(scaled))
  else:
    steps, _ = adam.update(flat_grads, adam.init(flat_grads))
    reference = {name: u * factors[name] for name, u in steps.items()}
  for name, value in before.items():
    np.testing.assert_allclose(after[name] - value, reference[name],
                               rtol=1e-4, atol=1e-10)
  # Stage 1's thresholds (multiplier 0.5): Adam's first step is the rate
  # times the gradient's sign, whatever its scale, unless rates are scaled.
  step = np.abs(after['threshold'][0] - before['threshold'][0])
  moved = np.abs(flat_grads['threshold'][0]) > 1e-3
  assert moved.any()
  np.testing.assert_allclose(
      step[moved], phase.learning_rate * (0.5 if target == 'rate' else 1.0),
      rtol=1e-2)


def test_relative_steps_keep_positive_scalars_positive():
  problem = _problem()
  encoder = _encoder('alista', problem, num_stages=2)
  config = CONFIG._replace(learning_rate=0.5, relative_steps=True,
                           refine_decays=(), phase_sigmas=(0.0,))
  stagewise.train_end_to_end(encoder, _batch_fn(problem),
                             x_eval=problem.validation.signals,
                             y_eval=problem.validation.codes, config=config)
  # A step of rate r < 1 changes each scalar by at most about r of itself.
  assert np.all(np.asarray(encoder.threshold[...]) > 0)
  assert np.all(np.asarray(encoder.step_size[...]) > 0)


def test_a_record_written_before_a_config_field_existed_resumes(tmp_path):
  problem = _problem()
  arguments = dict(x_eval=problem.validation.signals,
                   y_eval=problem.validation.codes, config=CONFIG)
  first = stagewise.train_stagewise(_encoder('alista', problem, 2),
                                    _batch_fn(problem), workdir=tmp_path,
                                    **arguments)
  path = tmp_path / stagewise.PROGRESS_RECORD
  record = json.loads(path.read_text())
  # As written before `relative_steps` was added (its default: the old
  # behaviour).
  del record['run']['config']['relative_steps']
  path.write_text(json.dumps(record))
  again = stagewise.train_stagewise(_encoder('alista', problem, 2),
                                    _batch_fn(problem), workdir=tmp_path,
                                    **arguments)
  chex.assert_trees_all_equal(_params(again.model), _params(first.model))
  with pytest.raises(ValueError, match='different stage-wise run'):
    stagewise.train_stagewise(
        _encoder('alista', problem, 2), _batch_fn(problem), workdir=tmp_path,
        **dict(arguments, config=CONFIG._replace(relative_steps=True)))


class Interrupt(Exception):
  pass


# Killed in the fourth phase (stage 2's refinement), or in the third (stage
# 2's new-stage phase, which starts from a copy of stage 1 in our variant,
# whose phases end at their best epochs).
@pytest.mark.parametrize('settings,killed_in', [
    (dict(), 4), (dict(compile_per_stage=True), 4),
    (dict(new_stage_init='previous_stage', restore_best=True), 3)])
def test_resume_after_a_kill_gives_identical_parameters(
    tmp_path, monkeypatch, settings, killed_in):
  problem = _problem()
  config = CONFIG._replace(**settings)
  arguments = dict(x_eval=problem.validation.signals,
                   y_eval=problem.validation.codes, config=config)
  encoder = lambda: _encoder('lista', problem, num_stages=2)
  reference = stagewise.train_stagewise(encoder(), _batch_fn(problem),
                                        **arguments)
  # Kill in the middle of a phase (after its first epoch).
  fits = []
  real_fit = train.fit

  def fit_then_die(*args, **kwargs):
    fits.append(1)
    if len(fits) == killed_in:
      def die(record):
        raise Interrupt
      kwargs = dict(kwargs, callback=die)
    return real_fit(*args, **kwargs)

  monkeypatch.setattr(train, 'fit', fit_then_die)
  with pytest.raises(Interrupt):
    stagewise.train_stagewise(encoder(), _batch_fn(problem),
                              workdir=tmp_path, **arguments)
  monkeypatch.setattr(train, 'fit', real_fit)
  record = json.loads((tmp_path / stagewise.PROGRESS_RECORD).read_text())
  assert len(record['phases']) == killed_in - 1
  resumed = stagewise.train_stagewise(encoder(), _batch_fn(problem),
                                      workdir=tmp_path, **arguments)
  chex.assert_trees_all_equal(_params(resumed.model),
                              _params(reference.model))
  strip = lambda phases: [p._replace(seconds=0) for p in phases]
  assert strip(resumed.phases) == strip(reference.phases)
  # Only the last finished phase's checkpoint is left.
  assert sorted(p.name for p in tmp_path.iterdir()) == [
      'stage_02_refine_1', stagewise.PROGRESS_RECORD]
  with pytest.raises(ValueError, match='different stage-wise run'):
    stagewise.train_stagewise(encoder(), _batch_fn(problem),
                              workdir=tmp_path,
                              **dict(arguments,
                                     config=config._replace(patience=2)))


@pytest.mark.parametrize('stage', [2, 3])
def test_copy_previous_stage_copies_the_per_stage_slices(stage):
  problem = _problem()
  encoder = _encoder('lista', problem)
  # Different slices, so that a copy shows.
  encoder.threshold[...] = jnp.arange(3.0)[:, None] + encoder.threshold[...]
  encoder.recurrent_weights[...] = (jnp.arange(1.0, 3.0)[:, None, None]
                                    * encoder.recurrent_weights[...])
  before = _params(encoder)
  stagewise.copy_previous_stage(encoder, stage)
  after = _params(encoder)
  expected = {name: value.copy() for name, value in before.items()}
  expected['threshold'][stage - 1] = before['threshold'][stage - 2]
  if stage == 3:  # S_3 <- S_2; stage 2's S has no predecessor.
    expected['recurrent_weights'][1] = before['recurrent_weights'][0]
  chex.assert_trees_all_equal(after, expected)
  with pytest.raises(ValueError, match='stage'):
    stagewise.copy_previous_stage(encoder, 1)


def test_restore_best_ends_each_phase_at_its_best_validation():
  problem = _problem()
  # Long enough phases at a high rate that some end after a worse epoch.
  config = CONFIG._replace(learning_rate=0.05, patience=2, max_epochs=6,
                           restore_best=True)
  result = stagewise.train_stagewise(
      _encoder('lista', problem, 2), _batch_fn(problem),
      x_eval=problem.validation.signals, y_eval=problem.validation.codes,
      config=config)
  for phase in result.phases:
    # The best epoch's, or the start's if no epoch beat it.
    assert phase.final_eval_loss <= phase.best_eval_loss
    assert phase.final_eval_nmse_db <= min(phase.eval_nmse_db) + 1e-6
  assert any(phase.eval_nmse_db[-1] > min(phase.eval_nmse_db)
             for phase in result.phases)
  # The encoder is where the last phase's best epoch left it.
  final = stagewise.stage_nmse_db(result.model, problem.validation.signals,
                                  problem.validation.codes)[-1]
  assert final == pytest.approx(result.phases[-1].final_eval_nmse_db,
                                abs=1e-3)


def test_only_new_stages_after_the_first_start_from_a_copy():
  problem = _problem()
  phases = stagewise.stagewise_phases(
      _encoder('lista', problem),
      CONFIG._replace(new_stage_init='previous_stage'))
  assert [p.name for p in phases if p.copy_previous_stage] == [
      'stage_02_new', 'stage_03_new']
  assert not any(p.copy_previous_stage
                 for p in stagewise.stagewise_phases(
                     _encoder('lista', problem), CONFIG))


@pytest.mark.parametrize('kind', ['alista', 'l0', 'lista'])
@pytest.mark.parametrize('stage', [1, 2, 3])
def test_truncated_stage_has_the_shared_steps_loss_and_gradients(kind, stage):
  problem = _problem()
  encoder = _encoder(kind, problem)
  x, codes = _batch_fn(problem)(0)

  def loss(model):
    return jnp.mean(jnp.square(model(x) - codes))

  shared = stagewise._StageOutput(encoder, stage)
  truncated = stagewise._TruncatedOutput(encoder, stage)
  shared_loss, shared_grads = nnx.value_and_grad(loss)(shared)
  truncated_loss, truncated_grads = nnx.value_and_grad(loss)(truncated)
  chex.assert_trees_all_close(truncated_loss, shared_loss, rtol=1e-6)
  chex.assert_trees_all_close(_params(truncated_grads.encoder),
                              _params(shared_grads.encoder),
                              rtol=1e-5, atol=1e-7)


def test_compiling_per_stage_trains_the_same_parameters():
  # ALISTA: few parameters, none with a gradient at rounding level. (Adam
  # turns a gradient entry at rounding level into a full step of either
  # sign, so encoders with such entries agree in their loss and gradients,
  # above, but not to the digit after training.)
  problem = _problem()
  arguments = dict(x_eval=problem.validation.signals,
                   y_eval=problem.validation.codes)
  shared = stagewise.train_stagewise(_encoder('alista', problem),
                                     _batch_fn(problem), config=CONFIG,
                                     **arguments)
  per_stage = stagewise.train_stagewise(
      _encoder('alista', problem), _batch_fn(problem),
      config=CONFIG._replace(compile_per_stage=True), **arguments)
  assert [p.steps for p in per_stage.phases] == [p.steps
                                                for p in shared.phases]
  chex.assert_trees_all_close(_params(per_stage.model), _params(shared.model),
                              rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('config,match', [
    (CONFIG._replace(learning_rate=0.0), 'learning_rate'),
    (CONFIG._replace(stage_decay=1.5), 'stage_decay'),
    (CONFIG._replace(phase_sigmas=(0.2,)), 'phase_sigmas'),
    (CONFIG._replace(patience=0), 'patience'),
    (CONFIG._replace(new_stage_init='copy'), 'new_stage_init'),
    (CONFIG._replace(stage_decay_target='grad'), 'stage_decay_target'),
    (CONFIG._replace(adam_eps=0.0), 'adam_eps'),
])
def test_bad_config_raises(config, match):
  problem = _problem()
  with pytest.raises(ValueError, match=match):
    stagewise.train_stagewise(_encoder('alista', problem), _batch_fn(problem),
                              x_eval=problem.validation.signals,
                              y_eval=problem.validation.codes, config=config)


def test_models_without_stages_raise():
  with pytest.raises(ValueError, match='parameter_stages'):
    stagewise.stagewise_phases(models.MLPEncoder(10, 20, rngs=nnx.Rngs(0)))
