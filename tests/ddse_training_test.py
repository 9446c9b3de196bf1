"""Tests of one unit's training (`l0enc.experiments.ddse_training`) on tiny
synthetic images."""

import dataclasses
import os
import shutil

import numpy as np
import pytest

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
    result = fit(*args, config=config, **kwargs)
    if config.num_epochs == 2 and not poisoned:
      poisoned.append(True)
      last = result.history[-1]._replace(train_loss=float('nan'))
      result = result._replace(history=result.history[:-1] + [last])
    return result

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
