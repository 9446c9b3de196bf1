"""Tests of l0enc.checkpoint: the files of a workdir, mismatches, damage."""

import json
import os

import chex
import jax
import numpy as np
import pytest

from fit_problems import LAM
from fit_problems import exact_matmuls  # pylint: disable=unused-import
from fit_problems import iht_problem, make_encoder, state_arrays
from fit_problems import unit_dictionary
from l0enc import checkpoint
from l0enc import models
from l0enc import train
from l0enc import validation


def test_checkpoint_files(tmp_path):
  x, y = iht_problem()
  config = train.TrainConfig(num_epochs=2, batch_size=64)
  model = train.fit(make_encoder('l0'), x, y, key=jax.random.key(0),
                    config=config, workdir=tmp_path).model
  # The epoch before stays, for discard_last_epoch.
  assert sorted(os.listdir(tmp_path)) == ['checkpoint.json',
                                          'state_000001.npz',
                                          'state_000002.npz']
  record = json.loads((tmp_path / 'checkpoint.json').read_text())
  assert (record['epoch'], record['step']) == (2, 8)
  assert record['sigma'] == pytest.approx(0.02)
  assert record['run']['config.batch_size'] == 64
  with np.load(tmp_path / 'state_000002.npz', allow_pickle=False) as arrays:
    assert {'model/input_weights', 'model/recurrent_weights',
            'model/threshold', 'model/sigma', 'optimizer/step'} <= set(arrays)
  restored = checkpoint.restore_model(tmp_path, make_encoder('l0'))
  chex.assert_trees_all_equal(state_arrays(restored), state_arrays(model))
  # A finished run resumes to no further epochs.
  again = train.fit(make_encoder('l0'), x, y, key=jax.random.key(0),
                    config=config, workdir=tmp_path)
  assert len(again.history) == 2
  chex.assert_trees_all_equal(state_arrays(again.model), state_arrays(model))


@pytest.mark.parametrize('change, match', [
    (dict(config=train.TrainConfig(num_epochs=2, batch_size=32)),
     'config.batch_size'),
    (dict(key=jax.random.key(1)), 'key'),
    (dict(model=models.DeepL0Encoder.from_dictionary(
        unit_dictionary()[:, :10], lam=LAM)), 'model/input_weights'),
])
def test_resuming_a_different_run_raises(change, match, tmp_path):
  x, y = iht_problem()
  run = dict(model=make_encoder('l0'), key=jax.random.key(0),
             config=train.TrainConfig(num_epochs=1, batch_size=64))
  train.fit(run.pop('model'), x, y, workdir=tmp_path, **run)
  run = dict(dict(run, model=make_encoder('l0')), **change)
  if 'model' in change:
    y = y[:, :10]
  with pytest.raises(ValueError, match=match):
    train.fit(run.pop('model'), x, y, workdir=tmp_path, **run)


def test_discard_last_epoch_resumes_as_if_it_never_ran(tmp_path):
  x, y = iht_problem()
  key = jax.random.key(0)
  config = train.TrainConfig(num_epochs=3, batch_size=64)
  reference = train.fit(make_encoder('l0'), x, y, key=key, config=config)
  train.fit(make_encoder('l0'), x, y, key=key, config=config, workdir=tmp_path)
  assert checkpoint.discard_last_epoch(tmp_path) == 2
  assert sorted(os.listdir(tmp_path)) == ['checkpoint.json',
                                          'state_000002.npz']
  resumed = train.fit(make_encoder('l0'), x, y, key=key, config=config,
                      workdir=tmp_path)
  chex.assert_trees_all_equal(state_arrays(resumed.model),
                              state_arrays(reference.model))
  strip = lambda history: [r._replace(seconds=0) for r in history]
  assert strip(resumed.history) == strip(reference.history)
  # Only one epoch can be undone: the arrays before it are gone.
  assert checkpoint.discard_last_epoch(tmp_path) == 2
  with pytest.raises(ValueError, match='only the last epoch'):
    checkpoint.discard_last_epoch(tmp_path)


def test_discard_the_only_epoch_removes_the_checkpoint(tmp_path):
  x, y = iht_problem()
  config = train.TrainConfig(num_epochs=1, batch_size=64)
  train.fit(make_encoder('l0'), x, y, key=jax.random.key(0), config=config,
            workdir=tmp_path)
  assert checkpoint.discard_last_epoch(tmp_path) == 0
  assert os.listdir(tmp_path) == []
  with pytest.raises(ValueError, match='no checkpoint'):
    checkpoint.discard_last_epoch(tmp_path)


@pytest.mark.parametrize('change', ['other_x', 'other_y', 'shuffled_rows',
                                    'float64_x'])
def test_resuming_on_other_data_of_the_same_shape_raises(change, tmp_path):
  x, y = iht_problem()
  config = train.TrainConfig(num_epochs=1, batch_size=64)
  train.fit(make_encoder('l0'), x, y, key=jax.random.key(0), config=config,
            workdir=tmp_path)
  other_x, other_y = iht_problem(seed=2)
  x, y = {'other_x': (other_x, y), 'other_y': (x, other_y),
          'shuffled_rows': (x[::-1], y[::-1]),
          'float64_x': (x.astype(np.float64), y)}[change]
  with pytest.raises(ValueError, match='data_fingerprint'):
    train.fit(make_encoder('l0'), x, y, key=jax.random.key(0),
              config=config._replace(num_epochs=2), workdir=tmp_path)


def test_data_fingerprint_is_a_function_of_shape_dtype_and_values():
  x, _ = iht_problem()
  fingerprint = checkpoint.data_fingerprint(x)
  assert fingerprint == checkpoint.data_fingerprint(x.copy())
  assert f'{x.shape} float32' in fingerprint
  changed = x.copy()
  changed[0, 0] += 1  # Row 0 is always in the sample.
  assert checkpoint.data_fingerprint(changed) != fingerprint


@pytest.mark.parametrize('damage', ['truncated_arrays', 'text_arrays',
                                    'truncated_record', 'empty_record'])
def test_damaged_checkpoint_files_name_the_file(damage, tmp_path):
  x, y = iht_problem()
  config = train.TrainConfig(num_epochs=1, batch_size=64)
  train.fit(make_encoder('l0'), x, y, key=jax.random.key(0), config=config,
            workdir=tmp_path)
  name = 'checkpoint.json' if damage.endswith('record') else (
      'state_000001.npz')
  path = tmp_path / name
  content = path.read_bytes()
  path.write_bytes({'truncated_arrays': content[:len(content) // 2],
                    'text_arrays': b'not an archive\n',
                    'truncated_record': content[:len(content) // 2],
                    'empty_record': b''}[damage])
  for resume in (
      lambda: train.fit(make_encoder('l0'), x, y, key=jax.random.key(0),
                        config=config._replace(num_epochs=2),
                        workdir=tmp_path),
      lambda: checkpoint.restore_model(tmp_path, make_encoder('l0'))):
    with pytest.raises(validation.DamagedFileError,
                       match=f'{name} is damaged') as error:
      resume()
    assert str(path) in str(error.value)
    assert 'Delete the workdir' in str(error.value)
