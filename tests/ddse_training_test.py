"""Tests of one unit's training (`l0enc.experiments.ddse_training`) on tiny
synthetic images."""

import dataclasses
import json
import os
import shutil

import chex
from flax import nnx
import jax
import numpy as np
import pytest

from l0enc import checkpoint
from l0enc import ddse
from l0enc import train
from l0enc.experiments import ddse as ddse_unit
from l0enc.experiments import ddse_training

# 8 x 8 images (n = 64, s = 16), m = 16, 1000 training images in batches of
# 100 (10 steps per epoch): seconds per unit once compiled.
BASE = ddse_unit.Config(
    dataset='synthetic', code_dim=16, num_epochs=2, batch_size=100,
    validation_size=200, num_train=1200, num_test=200, image_size=8,
    num_classes=4, learning_rate=0.05)


def test_plateau_learning_rates():
  errors = [5.0, 4.0, 4.5, 4.2, 3.0, 3.1, 3.2, 3.3, 3.4]
  rates = ddse_training.plateau_learning_rates(errors, initial=1.0,
                                               factor=0.1, patience=2)
  assert len(rates) == len(errors) + 1
  # Stalls after 4.0 (two epochs) and after 3.0 (two, then two more).
  np.testing.assert_allclose(rates, [1, 1, 1, 1, 0.1, 0.1, 0.1, 0.01, 0.01,
                                     0.001])
  capped = ddse_training.plateau_learning_rates(errors, initial=1.0,
                                                factor=0.1, patience=2,
                                                max_decays=1)
  assert min(capped) == 0.1
  strict = ddse_training.plateau_learning_rates([5.0, 4.9, 4.8], initial=1.0,
                                                factor=0.5, patience=1,
                                                min_improvement=0.5)
  np.testing.assert_allclose(strict, [1, 1, 0.5, 0.25])


def test_diverged_first_epoch_restarts_at_a_smaller_rate(tmp_path):
  config = dataclasses.replace(BASE, method=ddse.FULLY_CONNECTED)
  # At 100 the first epoch's loss overflows; the retry at 10 does not.
  retried = ddse_training.run(dataclasses.replace(config, learning_rate=100.0),
                              str(tmp_path / 'retried'))
  direct = ddse_training.run(dataclasses.replace(config, learning_rate=10.0),
                             str(tmp_path / 'direct'))
  assert retried['diverged_epochs'] == [0] and direct['diverged_epochs'] == []
  assert [r['learning_rate'] for r in retried['history']] == [10.0, 10.0]
  np.testing.assert_allclose(
      [r['train_loss'] for r in retried['history']],
      [r['train_loss'] for r in direct['history']], rtol=1e-6)
  assert retried['test_error'] == direct['test_error']
  with pytest.raises(FloatingPointError, match='diverged 4 times'):
    ddse_training.run(dataclasses.replace(config, learning_rate=1e6,
                                          num_epochs=1),
                      str(tmp_path / 'never'))


def test_diverged_later_epoch_is_undone_and_retried(tmp_path, monkeypatch):
  config = dataclasses.replace(BASE, method=ddse.FULLY_CONNECTED,
                               num_epochs=3)
  fit = train.fit
  poisoned = []

  def fit_that_diverges_once_in_epoch_2(*args, config, **kwargs):
    if poisoned:
      return fit(*args, config=config, **kwargs)
    # The first fit stops after epoch 2 and reports a NaN loss for it.
    poisoned.append(True)
    result = fit(*args, config=config._replace(num_epochs=2), **kwargs)
    last = result.history[-1]._replace(train_loss=float('nan'))
    return result._replace(history=result.history[:-1] + [last])

  monkeypatch.setattr(train, 'fit',
                      fit_that_diverges_once_in_epoch_2)
  results = ddse_training.run(config, str(tmp_path))
  assert poisoned and results['diverged_epochs'] == [1]
  assert [r['epoch'] for r in results['history']] == [1, 2, 3]
  rate = config.learning_rate
  np.testing.assert_allclose([r['learning_rate'] for r in results['history']],
                             [rate, rate / 10, rate / 10])
  assert np.isfinite([r['train_loss'] for r in results['history']]).all()
  # Epoch 2 was trained again at the smaller rate, epoch 1 kept.
  monkeypatch.setattr(train, 'fit', fit)
  clean = ddse_training.run(config, str(tmp_path / 'clean'))['history']
  assert results['history'][0]['train_loss'] == clean[0]['train_loss']
  assert results['history'][1]['train_loss'] != pytest.approx(
      clean[1]['train_loss'], rel=1e-3)


def test_interrupted_unit_resumes_to_the_same_model(tmp_path):
  config = dataclasses.replace(BASE, method=ddse.DDSE_MODEL)
  expected = ddse_training.run(config, str(tmp_path / 'whole'))
  # A run killed after its first epoch: its checkpoint, no results.json.
  unit_dir = str(tmp_path / 'unit')
  ddse_training.run(dataclasses.replace(config, num_epochs=1), unit_dir)
  os.remove(os.path.join(unit_dir, ddse_unit.RESULTS_FILE))
  resumed = ddse_training.run(config, unit_dir)
  for key in ('epoch', 'step', 'learning_rate'):
    assert ([r[key] for r in resumed['history']] ==
            [r[key] for r in expected['history']])
  np.testing.assert_allclose(
      [r['train_loss'] for r in resumed['history']],
      [r['train_loss'] for r in expected['history']], rtol=1e-5)
  np.testing.assert_allclose(resumed['test_loss'], expected['test_loss'],
                             rtol=1e-5)
  assert resumed['test_error'] == expected['test_error']
  # Without results.json, a finished unit restores its last checkpoint.
  shutil.copytree(tmp_path / 'whole', tmp_path / 'copy')
  os.remove(tmp_path / 'copy' / ddse_unit.RESULTS_FILE)
  restored = ddse_training.run(config, str(tmp_path / 'copy'))
  assert restored['test_error'] == expected['test_error']


def test_training_stream_visits_the_epochs_as_fit_orders_arrays():
  augmented = dataclasses.replace(BASE, train_fraction=0.5)
  config = dataclasses.replace(augmented, max_rotation_degrees=0,
                               max_scale_change=0, max_blur_sigma=0,
                               noise_stddev=0)
  unit = ddse_unit.prepare_data(config)
  order_key, augment_key = jax.random.key(3), jax.random.key(4)
  stream = ddse_training.training_stream(config, unit, order_key,
                                         augment_key)
  num_examples = len(unit.epoch_indices)
  assert stream.steps_per_epoch == num_examples // config.batch_size
  images = unit.train_images[unit.epoch_indices].reshape(num_examples, -1)
  labels = unit.train_labels[unit.epoch_indices]
  for epoch, step in ((0, 0), (0, 3), (1, 1)):
    # Independent reference: the batches train.fit cuts from arrays.
    order = np.asarray(jax.random.permutation(
        jax.random.fold_in(order_key, epoch), num_examples))
    expected = order[step * config.batch_size:
                     (step + 1) * config.batch_size]
    inputs, targets = stream.batch_fn(epoch * stream.steps_per_epoch + step)
    np.testing.assert_array_equal(inputs, images[expected])
    np.testing.assert_array_equal(targets, labels[expected])
  # Augmented: the same examples, changed, and the same each time drawn.
  augmented_stream = ddse_training.training_stream(augmented, unit, order_key,
                                                   augment_key)
  inputs, targets = augmented_stream.batch_fn(3)
  plain_inputs, plain_targets = stream.batch_fn(3)
  np.testing.assert_array_equal(targets, plain_targets)
  assert not np.allclose(inputs, plain_inputs, atol=1e-2)
  chex.assert_trees_all_equal(augmented_stream.batch_fn(3), (inputs, targets))


class _Killed(Exception):
  pass


def test_killed_training_resumes_to_the_same_parameters_and_rates(
    tmp_path, monkeypatch):
  # No epoch but the first counts as an improvement: the rate decays after
  # epoch 2, so the killed run must recompute the decay when it resumes.
  config = dataclasses.replace(BASE, method=ddse.DDSE_MODEL, num_epochs=3,
                               lr_patience=1, lr_min_improvement=100.0)
  rate = config.learning_rate
  fit = train.fit

  def fit_killed_after_epoch_2(*args, **kwargs):
    def callback(record):
      if record.epoch == 2:
        raise _Killed
    return fit(*args, callback=callback, **kwargs)

  monkeypatch.setattr(train, 'fit', fit_killed_after_epoch_2)
  with pytest.raises(_Killed):
    ddse_training.run(config, str(tmp_path / 'killed'))
  monkeypatch.setattr(train, 'fit', fit)
  resumed = ddse_training.run(config, str(tmp_path / 'killed'))
  whole = ddse_training.run(config, str(tmp_path / 'whole'))
  np.testing.assert_allclose(
      [r['learning_rate'] for r in resumed['history']],
      [rate, rate, rate / 10])
  assert resumed['history'] == [
      record | {'seconds': r['seconds']}
      for record, r in zip(whole['history'], resumed['history'])]
  parameters = [nnx.state(ddse_training.restore_final_model(
      config, str(tmp_path / name)), nnx.Param) for name in ('killed', 'whole')]
  chex.assert_trees_all_equal(*parameters)
  # The rate of the last epoch is the one in the optimizer state.
  record = json.loads((tmp_path / 'killed' / 'train' /
                       checkpoint.CHECKPOINT_RECORD).read_text())
  with np.load(tmp_path / 'killed' / 'train' / record['arrays']) as arrays:
    rates = [arrays[name] for name in arrays.files
             if name.endswith('hyperparams/learning_rate')]
  np.testing.assert_allclose(rates, [rate / 10])
