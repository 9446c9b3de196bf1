"""Tests of l0enc.train: steps, fit, sigma annealing, resuming, sharding."""

import json
import os
import subprocess
import sys
import textwrap

import chex
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fit_problems import CODE_DIM, LAM, M, NUM_EXAMPLES, SIGNAL_DIM
from fit_problems import exact_matmuls  # pylint: disable=unused-import
from fit_problems import iht_problem, make_encoder, state_arrays
from fit_problems import unit_dictionary
from l0enc import checkpoint
from l0enc import divergence
from l0enc import models
from l0enc import train


class SigmaProbe(nnx.Module):
  """Outputs its HELU sigma (0 in evaluation mode) in every entry."""

  def __init__(self):
    self.sigma = models.HeluSigma(jnp.asarray(0.5))
    self.deterministic = False

  def __call__(self, x):
    sigma = 0.0 if self.deterministic else self.sigma[...]
    return jnp.broadcast_to(sigma, x.shape)


class Interrupt(Exception):
  pass


def _kill_after(epoch):
  """A `fit` callback that interrupts training after `epoch`."""
  def interrupt(record):
    if record.epoch == epoch:
      raise Interrupt
  return interrupt


def test_squared_error_loss():
  outputs = jnp.array([[1.0, 2.0], [0.0, 0.0]])
  targets = jnp.array([[0.0, 0.0], [3.0, 0.0]])
  assert float(train.squared_error_loss(outputs, targets)) == 7.0


@pytest.mark.parametrize('problem', ['l0', 'msparse'])
def test_train_steps_equals_repeated_train_step(problem):
  x, y = iht_problem(m=M)
  states = []
  for _ in range(2):
    model = make_encoder(problem)
    # SGD: Adam would blow up rounding-level differences of tiny gradients.
    optimizer = nnx.Optimizer(model, optax.sgd(0.01), wrt=nnx.Param)
    states.append(nnx.split((model, optimizer)))
  (graphdef, looped), (_, scanned) = states
  looped_losses = []
  for step in range(4):
    batch = slice(32 * step, 32 * (step + 1))
    looped, loss = train.train_step(graphdef, looped, x[batch], y[batch])
    looped_losses.append(loss)
  scanned, scanned_losses = train.train_steps(
      graphdef, scanned, x[:128].reshape(4, 32, -1), y[:128].reshape(4, 32, -1))
  chex.assert_trees_all_close(scanned, looped, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(scanned_losses, looped_losses, rtol=1e-5)


def test_sigma_schedule():
  config = train.TrainConfig()
  np.testing.assert_allclose(
      [train.sigma_at_epoch(config, epoch) for epoch in range(4)],
      [0.2, 0.02, 0.002, 0.0002])
  floored = config._replace(min_sigma=0.01)
  assert train.sigma_at_epoch(floored, 3) == 0.01


def test_train_step_is_pure_and_compiles_once():
  x, y = iht_problem(m=M)
  model = make_encoder('msparse')
  optimizer = nnx.Optimizer(model, optax.sgd(0.01), wrt=nnx.Param)
  graphdef, state = nnx.split((model, optimizer))
  losses = []
  for step in range(8):
    batch = slice(32 * step, 32 * (step + 1))
    state, loss = train.train_step(graphdef, state, x[batch], y[batch])
    losses.append(float(loss))
  assert train.train_step._cache_size() >= 1
  size = train.train_step._cache_size()
  state, _ = train.train_step(graphdef, state, x[:32], y[:32])
  assert train.train_step._cache_size() == size
  model, optimizer = nnx.merge(graphdef, state)
  assert int(optimizer.step[...]) == 9
  assert np.all(np.isfinite(losses))
  assert not np.allclose(model.input_weights[...],
                         make_encoder('msparse').input_weights[...])


@pytest.mark.parametrize('kind', ['l0', 'msparse', 'lista', 'mlp'])
def test_fit_reduces_the_loss(kind):
  x, y = iht_problem(m=M if kind == 'msparse' else None)
  model = make_encoder(kind)
  before = train.evaluate(model, x, y).loss
  result = train.fit(model, x, y, key=jax.random.key(0), x_eval=x, y_eval=y,
                     config=train.TrainConfig(num_epochs=2, batch_size=32))
  assert result.model is model
  assert [record.epoch for record in result.history] == [1, 2]
  assert [record.step for record in result.history] == [8, 16]
  assert result.history[-1].eval_loss < 0.9 * before
  assert result.history[-1].eval_loss == pytest.approx(
      train.evaluate(model, x, y).loss)


def test_sigma_annealing_reaches_the_model():
  x = np.ones((64, 3), np.float32)
  model = SigmaProbe()
  result = train.fit(
      model, x, np.zeros_like(x), key=jax.random.key(0), x_eval=x,
      y_eval=np.zeros_like(x),
      config=train.TrainConfig(num_epochs=3, batch_size=16))
  sigmas = [record.sigma for record in result.history]
  np.testing.assert_allclose(sigmas, [0.2, 0.02, 0.002])
  # The training loss is 3 sigma^2: the train step ran with each epoch's
  # sigma. Evaluation runs in evaluation mode, where the probe outputs 0.
  np.testing.assert_allclose([r.train_loss for r in result.history],
                             3 * np.square(sigmas), rtol=1e-5)
  assert all(record.eval_loss == 0 for record in result.history)
  assert float(model.sigma[...]) == pytest.approx(0.002)


def test_models_without_helu_record_no_sigma():
  x, y = iht_problem(m=M)
  result = train.fit(make_encoder('msparse'), x, y, key=jax.random.key(0),
                     config=train.TrainConfig(num_epochs=1))
  assert result.history[0].sigma is None


def test_eval_metrics_and_custom_loss():
  x, y = iht_problem()
  labels = (np.abs(y).sum(-1) > np.median(np.abs(y).sum(-1))).astype(np.int32)

  def cross_entropy(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(
        logits[..., :2], labels).mean()

  def accuracy(logits, labels):
    return {'accuracy': np.mean(np.argmax(logits[..., :2], -1) == labels)}

  records = []
  result = train.fit(make_encoder('mlp'), x, labels, key=jax.random.key(0),
                     x_eval=x, y_eval=labels, loss_fn=cross_entropy,
                     metric_fn=accuracy, callback=records.append,
                     config=train.TrainConfig(num_epochs=2, batch_size=64))
  assert records == result.history
  assert set(records[-1].eval_metrics) == {'accuracy'}
  assert 0 <= records[-1].eval_metrics['accuracy'] <= 1
  assert records[-1].train_loss < records[0].train_loss * 1.5
  assert np.isfinite(records[-1].eval_loss)


def test_predict_pads_the_last_batch_and_keeps_the_mode():
  x, _ = iht_problem()
  model = make_encoder('mlp')
  outputs = train.predict(model, x[:37], batch_size=16)
  assert not model.dropouts[0].deterministic  # Still in training mode.
  model.eval()
  chex.assert_trees_all_close(outputs, np.asarray(model(x[:37])), atol=1e-6)


# Checkpoints.


@pytest.mark.parametrize('kind', ['l0', 'mlp'])
def test_kill_and_resume_gives_the_same_parameters(kind, tmp_path):
  x, y = iht_problem()
  # Momentum gives the optimizer a state; the MLP's dropout draws from an RNG
  # stream and the l0 encoder anneals sigma: all must survive the restart.
  config = train.TrainConfig(num_epochs=4, batch_size=64)
  tx = train.make_optimizer('sgd', 0.001, momentum=0.9)
  key = jax.random.key(7)
  reference = train.fit(make_encoder(kind), x, y, key=key, config=config, tx=tx,
                        workdir=tmp_path / 'uninterrupted')

  workdir = tmp_path / 'killed'
  with pytest.raises(Interrupt):
    train.fit(make_encoder(kind), x, y, key=key, config=config, tx=tx,
              workdir=workdir, callback=_kill_after(2))
  assert json.loads((workdir / 'checkpoint.json').read_text())['epoch'] == 2
  resumed_epochs = []
  resumed = train.fit(make_encoder(kind), x, y, key=key, config=config, tx=tx,
                      workdir=workdir,
                      callback=lambda r: resumed_epochs.append(r.epoch))
  assert resumed_epochs == [3, 4]
  chex.assert_trees_all_equal(state_arrays(resumed.model),
                              state_arrays(reference.model))
  strip = lambda history: [r._replace(seconds=0) for r in history]
  assert strip(resumed.history) == strip(reference.history)


def test_make_optimizer_matches_optax_and_keeps_the_rate_in_the_state():
  params = {'w': jnp.arange(3.0), 'b': jnp.ones(2)}
  grads = {'w': jnp.asarray([30.0, -40.0, 0.0]), 'b': jnp.zeros(2)}
  for name, momentum, reference in [
      ('sgd', None, optax.sgd(0.1)), ('sgd', 0.9, optax.sgd(0.1, 0.9)),
      ('adam', None, optax.adam(0.1))]:
    tx = train.make_optimizer(name, 0.1, momentum=momentum, clip_norm=5.0)
    assert tx is train.make_optimizer(name, 0.1, momentum=momentum,
                                      clip_norm=5.0)
    reference = optax.chain(optax.clip_by_global_norm(5.0), reference)
    state, reference_state = tx.init(params), reference.init(params)
    for _ in range(3):
      updates, state = tx.update(grads, state, params)
      expected, reference_state = reference.update(grads, reference_state,
                                                   params)
      chex.assert_trees_all_close(updates, expected, rtol=1e-5)
    assert float(state[-1].hyperparams['learning_rate']) == pytest.approx(0.1)


def test_rate_fn_sets_the_rate_of_each_epoch_and_survives_a_resume(tmp_path):
  x, y = iht_problem()
  config = train.TrainConfig(num_epochs=3, batch_size=64)
  tx = train.make_optimizer('sgd', 0.01, momentum=0.5)
  # A rate of ~0 from the second epoch on freezes the parameters there.
  frozen = lambda history: 0.01 if not history else 1e-30
  one_epoch = train.fit(make_encoder('mlp'), x, y, key=jax.random.key(3), tx=tx,
                        config=config._replace(num_epochs=1)).model
  three = train.fit(make_encoder('mlp'), x, y, key=jax.random.key(3), tx=tx,
                    config=config, rate_fn=frozen)
  weights = lambda model: jax.tree.map(np.asarray,
                                      nnx.state(model, nnx.Param))
  chex.assert_trees_all_close(weights(three.model), weights(one_epoch),
                              rtol=1e-6, atol=1e-7)
  # A rate of the history: resumed after a kill, the same rates follow.
  halving = lambda history: 0.02 * 0.5 ** len(history)
  reference = train.fit(make_encoder('mlp'), x, y, key=jax.random.key(3), tx=tx,
                        config=config, rate_fn=halving).model

  with pytest.raises(Interrupt):
    train.fit(make_encoder('mlp'), x, y, key=jax.random.key(3), tx=tx,
              config=config, rate_fn=halving, workdir=tmp_path,
              callback=_kill_after(1))
  resumed = train.fit(make_encoder('mlp'), x, y, key=jax.random.key(3), tx=tx,
                      config=config, rate_fn=halving, workdir=tmp_path).model
  chex.assert_trees_all_equal(state_arrays(resumed), state_arrays(reference))


def test_rate_fn_needs_an_injected_rate():
  x, y = iht_problem()
  with pytest.raises(ValueError, match='make_optimizer'):
    train.fit(make_encoder('mlp'), x, y, key=jax.random.key(0),
              tx=optax.sgd(0.1),
              config=train.TrainConfig(num_epochs=1, batch_size=64),
              rate_fn=lambda history: 0.1)


@pytest.mark.parametrize('arguments, match', [
    (dict(name='rmsprop'), 'optimizer'),
    (dict(learning_rate=0.0), 'learning_rate'),
    (dict(momentum=1.0), 'momentum'),
    (dict(name='adam', momentum=0.9), 'momentum'),
    (dict(clip_norm=-1.0), 'clip_norm'),
])
def test_make_optimizer_refuses_bad_settings(arguments, match):
  arguments = dict(dict(name='sgd', learning_rate=0.1), **arguments)
  with pytest.raises(ValueError, match=match):
    train.make_optimizer(**arguments)


# Bad input.


@pytest.mark.parametrize('arguments, match', [
    (dict(y_train=np.zeros((10, CODE_DIM))), 'examples'),
    (dict(config=train.TrainConfig(batch_size=1000)), 'exceeds'),
    (dict(x_eval=np.zeros((4, SIGNAL_DIM))), 'x_eval and y_eval'),
    (dict(restore_best=True), 'restore_best needs x_eval'),
    (dict(config=train.TrainConfig(initial_sigma=1.0)), 'initial_sigma'),
    (dict(config=train.TrainConfig(num_epochs=-1)), 'num_epochs'),
    (dict(mesh=jax.sharding.Mesh(np.asarray(jax.devices()), ('batch',))),
     "'data'"),
    (dict(x_train=np.zeros((NUM_EXAMPLES, SIGNAL_DIM + 1))),
     f'shape \\(..., {SIGNAL_DIM}\\)'),
])
def test_fit_bad_arguments_raise(arguments, match):
  x, y = iht_problem()
  arguments = dict(dict(x_train=x, y_train=y), **arguments)
  with pytest.raises(ValueError, match=match):
    train.fit(make_encoder('l0'), arguments.pop('x_train'),
              arguments.pop('y_train'), key=jax.random.key(0), **arguments)


# Streams of fresh batches and early stopping.


def _dictionary_stream(dictionary, step):
  """The batch of `step`: fresh sparse codes and their signals."""
  key = jax.random.fold_in(jax.random.key(3), step)
  codes = jax.random.normal(key, (32, CODE_DIM)) * jax.random.bernoulli(
      jax.random.fold_in(key, 1), 0.2, (32, CODE_DIM))
  return codes @ dictionary.T, codes


def _stream():
  """A pure batch function of the step: fresh signals, IHT-initialized codes."""
  dictionary = unit_dictionary()
  return lambda step: _dictionary_stream(dictionary, step)


def test_fit_on_a_stream_reduces_the_loss_and_visits_each_step_once():
  batch_fn = _stream()
  x_eval, y_eval = jax.vmap(batch_fn)(jnp.arange(1000, 1004))
  x_eval, y_eval = x_eval.reshape(-1, SIGNAL_DIM), y_eval.reshape(-1, CODE_DIM)
  model = models.LISTA.from_dictionary(unit_dictionary(), lam=LAM, num_stages=3)
  before = train.evaluate(model, x_eval, y_eval).loss
  result = train.fit(model, batch_fn, key=jax.random.key(0),
                     config=train.TrainConfig(num_epochs=3),
                     tx=optax.adam(1e-3), steps_per_epoch=25,
                     x_eval=x_eval, y_eval=y_eval)
  assert [r.step for r in result.history] == [25, 50, 75]
  assert result.history[-1].eval_loss < 0.9 * before
  # The first epoch's mean loss is that of the steps 0..24 of the stream:
  # the steps of train_steps see batch_fn(0), batch_fn(1), ...
  model_again = models.LISTA.from_dictionary(unit_dictionary(), lam=LAM,
                                             num_stages=3)
  optimizer = nnx.Optimizer(model_again, optax.adam(1e-3), wrt=nnx.Param)
  graphdef, state = nnx.split((model_again, optimizer))
  inputs, targets = jax.vmap(batch_fn)(jnp.arange(25))
  _, losses = train.train_steps(graphdef, state, inputs, targets)
  np.testing.assert_allclose(result.history[0].train_loss, np.mean(losses),
                             rtol=1e-5)


def test_a_partial_stream_trains_as_its_closure_and_compiles_once():
  arguments = dict(key=jax.random.key(0), steps_per_epoch=5,
                   config=train.TrainConfig(num_epochs=2),
                   tx=optax.adam(1e-3))
  reference = train.fit(make_encoder('l0'), _stream(), **arguments)
  partial = jax.tree_util.Partial(_dictionary_stream, unit_dictionary())
  result = train.fit(make_encoder('l0'), partial, **arguments)
  chex.assert_trees_all_close(state_arrays(result.model),
                              state_arrays(reference.model), rtol=1e-6)
  np.testing.assert_allclose([r.train_loss for r in result.history],
                             [r.train_loss for r in reference.history],
                             rtol=1e-6)
  # Other arrays of the same shape: the compiled chunk is reused.
  compiled = train._stream_chunk._cache_size()
  other = jax.tree_util.Partial(_dictionary_stream, -unit_dictionary())
  train.fit(make_encoder('l0'), other, **arguments)
  assert train._stream_chunk._cache_size() == compiled


def test_stream_kill_and_resume_gives_the_same_parameters(tmp_path):
  config = train.TrainConfig(num_epochs=4)
  arguments = dict(key=jax.random.key(0), config=config, steps_per_epoch=5,
                   tx=optax.adam(1e-3))
  reference = train.fit(make_encoder('l0'), _stream(), **arguments)

  with pytest.raises(Interrupt):
    train.fit(make_encoder('l0'), _stream(), workdir=tmp_path,
              callback=_kill_after(2), **arguments)
  resumed = train.fit(make_encoder('l0'), _stream(), workdir=tmp_path,
                      **arguments)
  chex.assert_trees_all_equal(state_arrays(resumed.model),
                              state_arrays(reference.model))
  with pytest.raises(ValueError, match='stream_steps_per_epoch'):
    train.fit(make_encoder('l0'), _stream(), workdir=tmp_path,
              **dict(arguments, steps_per_epoch=6))


def test_stop_fn_ends_training_and_a_resumed_run_stops_there_too(tmp_path):
  arguments = dict(key=jax.random.key(0),
                   config=train.TrainConfig(num_epochs=10),
                   steps_per_epoch=2, workdir=tmp_path,
                   stop_fn=lambda history: len(history) >= 3)
  first = train.fit(make_encoder('lista'), _stream(), **arguments)
  assert len(first.history) == 3
  epochs = []
  again = train.fit(make_encoder('lista'), _stream(), callback=epochs.append,
                    **arguments)
  assert epochs == [] and len(again.history) == 3
  chex.assert_trees_all_equal(state_arrays(again.model),
                              state_arrays(first.model))


def test_restore_best_ends_with_the_best_epoch_and_survives_a_kill(tmp_path):
  batch_fn = _stream()
  x_eval, y_eval = jax.vmap(batch_fn)(jnp.arange(1000, 1004))
  x_eval, y_eval = x_eval.reshape(-1, SIGNAL_DIM), y_eval.reshape(-1, CODE_DIM)
  # A rate too high for a steady descent: the best epoch is not the last.
  arguments = dict(key=jax.random.key(0),
                   config=train.TrainConfig(num_epochs=6),
                   tx=optax.adam(0.5), steps_per_epoch=5, x_eval=x_eval,
                   y_eval=y_eval)
  last = train.fit(make_encoder('lista'), _stream(), **arguments)
  best = train.fit(make_encoder('lista'), _stream(), restore_best=True,
                   **arguments)
  losses = [r.eval_loss for r in best.history]
  best_epoch = int(np.argmin(losses)) + 1
  assert best_epoch < len(losses)  # The case the option is for.
  assert best.initial_evaluation.loss > min(losses)
  assert last.initial_evaluation is None
  assert losses == [r.eval_loss for r in last.history]  # Same training.
  np.testing.assert_allclose(
      train.evaluate(best.model, x_eval, y_eval).loss, min(losses),
      rtol=1e-6)
  assert train.evaluate(last.model, x_eval, y_eval).loss > min(losses)

  # Killed after a later epoch: the resumed run reads the best epoch's
  # arrays back, and the workdir's checkpoint holds the model it returns.
  with pytest.raises(Interrupt):
    train.fit(make_encoder('lista'), _stream(), workdir=tmp_path,
              restore_best=True, callback=_kill_after(best_epoch + 1),
              **arguments)
  resumed = train.fit(make_encoder('lista'), _stream(), workdir=tmp_path,
                      restore_best=True, **arguments)
  chex.assert_trees_all_equal(state_arrays(resumed.model),
                              state_arrays(best.model))
  chex.assert_trees_all_equal(
      state_arrays(checkpoint.restore_model(tmp_path, make_encoder('lista'))),
      state_arrays(best.model))


def test_restore_best_returns_the_start_when_training_only_made_it_worse(
    tmp_path):
  batch_fn = _stream()
  x_eval, y_eval = jax.vmap(batch_fn)(jnp.arange(1000, 1004))
  x_eval, y_eval = x_eval.reshape(-1, SIGNAL_DIM), y_eval.reshape(-1, CODE_DIM)
  start = train.evaluate(make_encoder('lista'), x_eval, y_eval)
  arguments = dict(key=jax.random.key(0),
                   config=train.TrainConfig(num_epochs=3),
                   tx=optax.adam(3.0), steps_per_epoch=5, x_eval=x_eval,
                   y_eval=y_eval, restore_best=True)

  with pytest.raises(Interrupt):
    train.fit(make_encoder('lista'), _stream(), workdir=tmp_path,
              callback=_kill_after(2), **arguments)
  result = train.fit(make_encoder('lista'), _stream(), workdir=tmp_path,
                     **arguments)
  # Every epoch diverged upwards; the model is the one training began with.
  assert min(r.eval_loss for r in result.history) > 10 * start.loss
  assert result.initial_evaluation == start
  chex.assert_trees_all_equal(state_arrays(result.model),
                              state_arrays(make_encoder('lista')))
  chex.assert_trees_all_equal(
      state_arrays(checkpoint.restore_model(tmp_path, make_encoder('lista'))),
      state_arrays(make_encoder('lista')))
  # A workdir written without restore_best has no start to go back to.
  train.fit(make_encoder('lista'), _stream(), workdir=tmp_path / 'plain',
            **dict(arguments, restore_best=False))
  with pytest.raises(ValueError, match='without restore_best'):
    train.fit(make_encoder('lista'), _stream(), workdir=tmp_path / 'plain',
              **arguments)


@pytest.mark.parametrize('arguments,match', [
    (dict(y_train=np.zeros((4, CODE_DIM))), 'y_train must be None'),
    (dict(), 'steps_per_epoch is required'),
    (dict(steps_per_epoch=0), 'steps_per_epoch'),
])
def test_fit_stream_bad_arguments_raise(arguments, match):
  arguments = dict(dict(y_train=None), **arguments)
  with pytest.raises(ValueError, match=match):
    train.fit(make_encoder('lista'), _stream(), arguments.pop('y_train'),
              key=jax.random.key(0), **arguments)


def test_fit_arrays_reject_steps_per_epoch():
  x, y = iht_problem()
  with pytest.raises(ValueError, match='steps_per_epoch is only'):
    train.fit(make_encoder('lista'), x, y, key=jax.random.key(0),
              steps_per_epoch=3)


# Data parallelism over two (simulated) CPU devices.

_DATA_PARALLEL_SCRIPT = textwrap.dedent('''
    import sys
    import jax
    jax.config.update('jax_enable_x64', True)
    import numpy as np
    from flax import nnx
    from l0enc import checkpoint, models, train

    assert len(jax.devices()) == 2, jax.devices()
    rng = np.random.default_rng(0)
    dictionary = rng.normal(size=(12, 20))
    dictionary /= np.linalg.norm(dictionary, axis=0)
    x = rng.normal(size=(256, 12))
    y = rng.normal(size=(256, 20)) * (rng.random((256, 20)) < 0.2)
    config = train.TrainConfig(num_epochs=2, batch_size=64)
    tx = train.make_optimizer('sgd', 0.001, momentum=0.9)
    results = {}
    for kind in ['l0', 'mlp']:
      for num_devices in [1, 2]:
        if kind == 'l0':
          model = models.DeepL0Encoder.from_dictionary(dictionary, lam=0.05)
        else:
          model = models.MLPEncoder(12, 20, param_dtype=np.float64,
                                    rngs=nnx.Rngs(0))
        mesh = train.data_parallel_mesh(jax.devices()[:num_devices])
        train.fit(model, x, y, key=jax.random.key(0), config=config, tx=tx,
                  mesh=mesh, x_eval=x[:37], y_eval=y[:37])
        sharding = model.input_weights[...].sharding if kind == 'l0' else (
            model.output_layer.kernel[...].sharding)
        assert len(sharding.device_set) == num_devices, sharding
        assert sharding.is_fully_replicated, sharding
        for name, value in checkpoint.flatten_state(nnx.state(model)).items():
          results[f'{kind}/{num_devices}/{name}'] = value
    try:
      train.fit(models.DeepL0Encoder.from_dictionary(dictionary, lam=0.05),
                x, y, key=jax.random.key(0),
                config=config._replace(batch_size=63))
    except ValueError as error:
      assert 'multiple of the number of devices' in str(error), error
    else:
      raise AssertionError('batch_size=63 on 2 devices did not raise')
    np.savez(sys.argv[1], **results)
''')


def test_two_device_data_parallel_matches_one_device(tmp_path):
  output = tmp_path / 'results.npz'
  environment = dict(os.environ,
                     XLA_FLAGS=' '.join(filter(None, [
                         os.environ.get('XLA_FLAGS'),
                         '--xla_force_host_platform_device_count=2'])),
                     JAX_PLATFORMS='cpu')
  completed = subprocess.run(
      [sys.executable, '-c', _DATA_PARALLEL_SCRIPT, str(output)],
      env=environment, capture_output=True, text=True, timeout=300)
  assert completed.returncode == 0, completed.stderr[-3000:]
  with np.load(output) as results:
    results = dict(results)
  for kind in ['l0', 'mlp']:
    one = {name.split('/', 2)[2]: value for name, value in results.items()
           if name.startswith(f'{kind}/1/')}
    two = {name.split('/', 2)[2]: value for name, value in results.items()
           if name.startswith(f'{kind}/2/')}
    assert one and one.keys() == two.keys()
    chex.assert_trees_all_close(two, one, atol=1e-10, rtol=1e-10)


# Non-finite data, divergence, data fingerprints, damaged checkpoints.

SENTINEL = 1e3  # A target entry that makes `_poisoned_loss` NaN.


def _poisoned_loss(outputs, targets):
  """The squared error, times NaN on a batch holding a SENTINEL target.

  Its gradient is NaN too, so the parameters become NaN at that step.
  """
  poisoned = jnp.any(targets >= SENTINEL)
  return train.squared_error_loss(outputs, targets) * jnp.where(
      poisoned, jnp.nan, 1.0)


def _poisoned_targets(y, row):
  y = y.copy()
  y[row, 0] = SENTINEL
  return y


def _first_poisoned_step(key, epoch, row, batch_size, steps_per_epoch):
  """The 1-based global step whose batch holds `row`: fit's data order."""
  order = np.asarray(jax.random.permutation(jax.random.fold_in(key, epoch),
                                            NUM_EXAMPLES))
  position = int(np.flatnonzero(order == row)[0])
  return epoch * steps_per_epoch + position // batch_size + 1


@pytest.mark.parametrize('name, value', [
    ('x_train', np.nan), ('x_train', np.inf), ('y_train', np.nan),
    ('y_train', -np.inf), ('x_eval', np.nan), ('y_eval', np.inf)])
def test_fit_refuses_nonfinite_data_before_training(name, value, tmp_path):
  x, y = iht_problem()
  arrays = dict(x_train=x.copy(), y_train=y.copy(), x_eval=x[:8].copy(),
                y_eval=y[:8].copy())
  arrays[name][3, 1] = value
  with pytest.raises(ValueError, match=f'{name} holds NaN or infinite'):
    train.fit(make_encoder('l0'), arrays['x_train'], arrays['y_train'],
              x_eval=arrays['x_eval'], y_eval=arrays['y_eval'],
              key=jax.random.key(0), workdir=tmp_path / 'run',
              config=train.TrainConfig(num_epochs=1, batch_size=64))
  assert not (tmp_path / 'run').exists()


def test_fit_refuses_complex_data():
  x, y = iht_problem()
  with pytest.raises(ValueError, match='x_train must be real'):
    train.fit(make_encoder('l0'), x.astype(np.complex64), y,
              key=jax.random.key(0),
              config=train.TrainConfig(num_epochs=1, batch_size=64))


def _fit_clean_epoch_then_poisoned(tmp_path, **kwargs):
  """One clean epoch checkpointed, then a second on data holding SENTINEL."""
  x, y = iht_problem()
  key = jax.random.key(0)
  options = dict(key=key, loss_fn=_poisoned_loss, workdir=tmp_path,
                 data_id='the same source data')
  train.fit(make_encoder('l0'), x, y, config=train.TrainConfig(
      num_epochs=1, batch_size=64), **options)
  row = 17
  step = _first_poisoned_step(key, 1, row, 64, NUM_EXAMPLES // 64)
  run = lambda: train.fit(
      make_encoder('l0'), x, _poisoned_targets(y, row),
      config=train.TrainConfig(num_epochs=2, batch_size=64), **options,
      **kwargs)
  return run, step


def _assert_checkpoint_finite(workdir, epoch):
  record = json.loads((workdir / 'checkpoint.json').read_text())
  assert record['epoch'] == epoch
  for name in os.listdir(workdir):
    if name.endswith('.npz'):
      with np.load(workdir / name, allow_pickle=False) as arrays:
        for array in arrays.values():
          assert np.all(np.isfinite(array)), name


def test_a_nonfinite_loss_stops_fit_naming_epoch_and_step(tmp_path):
  run, step = _fit_clean_epoch_then_poisoned(tmp_path)
  with pytest.raises(divergence.DivergedError,
                     match=f'epoch 2: the training loss became nan at step '
                     f'{step} ') as error:
    run()
  assert (error.value.epoch, error.value.step) == (2, step)
  assert 'holds epoch 1' in str(error.value)
  # Nothing of the diverged epoch reached the workdir.
  assert sorted(os.listdir(tmp_path)) == ['checkpoint.json',
                                          'state_000001.npz']
  _assert_checkpoint_finite(tmp_path, epoch=1)


def test_recorded_divergence_is_undone_by_discard_last_epoch(tmp_path):
  run, _ = _fit_clean_epoch_then_poisoned(tmp_path,
                                          on_nonfinite_loss='record')
  history = run().history
  assert len(history) == 2 and np.isnan(history[-1].train_loss)
  _assert_checkpoint_finite(tmp_path, epoch=2)
  record = json.loads((tmp_path / 'checkpoint.json').read_text())
  assert record['diverged'] and record['arrays'] == 'state_000001.npz'
  with pytest.raises(ValueError, match='discard_last_epoch'):
    run()
  assert checkpoint.discard_last_epoch(tmp_path) == 1
  # Resumed on clean data: as if the diverged epoch had never run.
  x, y = iht_problem()
  config = train.TrainConfig(num_epochs=2, batch_size=64)
  options = dict(key=jax.random.key(0), loss_fn=_poisoned_loss,
                 config=config)
  resumed = train.fit(make_encoder('l0'), x, y, workdir=tmp_path,
                      data_id='the same source data', **options)
  reference = train.fit(make_encoder('l0'), x, y, **options)
  chex.assert_trees_all_equal(state_arrays(resumed.model),
                              state_arrays(reference.model))


def test_diverging_in_the_first_epoch_writes_no_arrays(tmp_path):
  x, y = iht_problem()
  train_config = train.TrainConfig(num_epochs=1, batch_size=64)
  history = train.fit(make_encoder('l0'), x, _poisoned_targets(y, 0),
                      key=jax.random.key(0), config=train_config,
                      loss_fn=_poisoned_loss, workdir=tmp_path,
                      on_nonfinite_loss='record').history
  assert np.isnan(history[-1].train_loss)
  assert os.listdir(tmp_path) == ['checkpoint.json']
  assert checkpoint.discard_last_epoch(tmp_path) == 0


def test_nonfinite_parameters_are_never_checkpointed(tmp_path):
  x, y = iht_problem()
  model = make_encoder('l0')
  model.input_weights[...] = model.input_weights[...].at[0, 0].set(jnp.nan)
  with pytest.raises(divergence.DivergedError, match='epoch 1'):
    # The NaN weight reaches every code through S: the loss is NaN at once.
    train.fit(model, x, y, key=jax.random.key(0), workdir=tmp_path,
              config=train.TrainConfig(num_epochs=1, batch_size=64))
  assert not os.path.exists(tmp_path / 'checkpoint.json')


def test_bad_on_nonfinite_loss_raises():
  x, y = iht_problem()
  with pytest.raises(ValueError, match='on_nonfinite_loss'):
    train.fit(make_encoder('l0'), x, y, key=jax.random.key(0),
              on_nonfinite_loss='ignore')


