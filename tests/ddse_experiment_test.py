"""Tests of the DDSE experiment's settings and data
(`l0enc.experiments.ddse`)."""

import dataclasses

import chex
import numpy as np
import pytest

from l0enc import ddse
from l0enc.experiments import ddse as ddse_unit

# 8 x 8 images (n = 64, s = 16), m = 16, 1000 training images in batches of
# 100 (10 steps per epoch): seconds per unit once compiled.
BASE = ddse_unit.Config(
    dataset='synthetic', code_dim=16, num_epochs=2, batch_size=100,
    validation_size=200, num_train=1200, num_test=200, image_size=8,
    num_classes=4, learning_rate=0.05)


def test_class_proportional_subset_keeps_proportions():
  rng = np.random.default_rng(0)
  labels = rng.permutation(np.repeat([0, 1, 2, 7], [500, 300, 150, 50]))
  for fraction in (0.02, 0.1, 0.5, 1.0):
    subset = ddse_unit.class_proportional_subset(labels, fraction, seed=3)
    assert len(np.unique(subset)) == len(subset)
    assert np.all(np.diff(subset) > 0)
    counts = np.bincount(labels[subset], minlength=8)[[0, 1, 2, 7]]
    np.testing.assert_array_equal(
        counts, [max(1, round(fraction * n)) for n in (500, 300, 150, 50)])
  again = ddse_unit.class_proportional_subset(labels, 0.1, seed=3)
  other = ddse_unit.class_proportional_subset(labels, 0.1, seed=4)
  np.testing.assert_array_equal(again, ddse_unit.class_proportional_subset(
      labels, 0.1, seed=3))
  assert not np.array_equal(again, other)


@pytest.mark.parametrize('fraction', [0.0, -0.5, 1.5])
def test_class_proportional_subset_rejects_bad_fractions(fraction):
  with pytest.raises(ValueError, match='fraction'):
    ddse_unit.class_proportional_subset(np.arange(10) % 2, fraction, seed=0)


@pytest.mark.parametrize('kwargs,match', [
    (dict(sparsity_ratio=1.5), r'sparsity s .* must be in \[1, n = 64\]'),
    (dict(sparsity_ratio=0.001), r'sparsity s'),
    (dict(method='lista'), 'method must be one of'),
    (dict(train_fraction=0.0), r'train_fraction .* \(0, 1\]'),
    (dict(train_fraction=1.01), r'train_fraction .* \(0, 1\]'),
    (dict(dataset='cifar'), 'dataset'),
    (dict(validation_size=1200), 'validation_size'),
    (dict(momentum=1.0), 'momentum'),
    (dict(learning_rate=-0.1), 'learning_rate'),
    (dict(max_rotation_degrees=60), 'at most 45'),
])
def test_config_validation(kwargs, match):
  with pytest.raises(ValueError, match=match):
    dataclasses.replace(BASE, **kwargs)


def test_config_properties():
  assert (BASE.signal_dim, BASE.sparsity, BASE.classes) == (64, 16, 4)
  mnist = ddse_unit.Config()
  assert (mnist.signal_dim, mnist.sparsity, mnist.code_dim,
          mnist.num_stages) == (784, 196, 1024, 2)
  assert mnist.initial_learning_rate == ddse_unit.DEFAULT_LEARNING_RATES[
      ddse.DDSE_MODEL]
  assert set(ddse_unit.DEFAULT_LEARNING_RATES) == set(ddse.MODEL_KINDS)


def test_prepare_data_subsamples_and_repeats():
  config = dataclasses.replace(BASE, train_fraction=0.2)
  unit = ddse_unit.prepare_data(config)
  assert unit.num_full_train == 1000
  assert len(unit.train_images) == pytest.approx(200, abs=4)
  # Repeated about t / ts = 5 times: an epoch as long as a full one.
  assert len(unit.epoch_indices) == 5 * len(unit.train_images)
  np.testing.assert_array_equal(np.bincount(unit.epoch_indices), 5)
  chex.assert_shape([unit.x_validation, unit.x_test], (None, 64))
  once = ddse_unit.prepare_data(dataclasses.replace(config,
                                                    repeat_subset=False))
  assert len(once.epoch_indices) == len(once.train_images)
