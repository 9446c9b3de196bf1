"""Tests of l0enc.experiments.classification on tiny data."""

import dataclasses
import json
import os

import chex
from flax import nnx
import jax
import numpy as np
import pytest

from l0enc import augment
from l0enc import checkpoint
from l0enc import solvers
from l0enc import tasks
from l0enc import train
from l0enc import whitening
from l0enc.experiments import classification
from l0enc.experiments import clustering
from l0enc.experiments import task_reports
from l0enc.experiments import tasks_common
import task_runs

TINY = task_runs.TINY


@pytest.fixture(name='classification_run')
def fixture_classification_run():
  return task_runs.classification_run()


def test_classification_results_and_files(classification_run):
  config, workdir, results = classification_run
  assert list(results['units']) == ['lista_p8', 'l0_p8', 'msparse_m2_p8',
                                    'tdsc_p8']
  assert results['data']['num_classes'] == 3
  for name, unit in results['units'].items():
    assert 0 <= unit['test_error'] <= 100
    assert 0 <= unit['validation_error'] <= 100
    assert len(unit['history']) == config.num_epochs
    assert np.sum(unit['confusion_matrix']) == results['data']['num_test']
    assert os.path.exists(os.path.join(workdir, name, 'result.json'))
  assert len(results['units']['lista_p8']['pretrain_history']) == 1
  for key in ('mean_test_code_nonzeros', 'initial_mean_test_code_nonzeros'):
    assert 0 < results['units']['msparse_m2_p8'][key] <= 2
  for name in ('results.json', 'settings.json', 'dictionary_p8.npz',
               'l1_codes_p8.npz'):
    assert os.path.exists(os.path.join(workdir, name))
  with open(os.path.join(workdir, 'results.json')) as handle:
    assert json.load(handle) == json.loads(json.dumps(results))


def test_classification_resumes(classification_run):
  config, workdir, results = classification_run
  # A finished run is read back.
  assert classification.run(config, workdir)['units'] == results['units']
  # A unit whose result was lost is rebuilt from its last checkpoint: the
  # same model, so the same numbers, without training again.
  os.remove(os.path.join(workdir, 'msparse_m2_p8', 'result.json'))
  again = classification.run(config, workdir)['units']['msparse_m2_p8']
  before = results['units']['msparse_m2_p8']
  assert again['test_error'] == before['test_error']
  assert again['history'] == before['history']
  # Other settings may not share the workdir.
  with pytest.raises(ValueError, match='other settings'):
    classification.run(dataclasses.replace(config, lam=2.0), workdir)


def test_report_only_trains_nothing_and_leaves_out_missing_units(
    classification_run, tmp_path):
  config, workdir, results = classification_run
  more = dataclasses.replace(config, code_dims=(8, 12))
  reported = classification.run(more, workdir, report_only=True)
  assert list(reported['units']) == list(results['units'])
  for name, unit in reported['units'].items():
    assert unit['test_error'] == results['units'][name]['test_error']
  assert not os.path.exists(os.path.join(workdir, 'lista_p12'))
  assert '| — |' in task_reports.paper_table(reported)


def test_initial_code_nonzeros_are_those_of_iht(classification_run):
  """The untrained Deep l0 encoder is K iterations of IHT (eq. 8)."""
  config, workdir, results = classification_run
  task_data = classification.load_classification_data(config)
  with np.load(os.path.join(workdir, 'dictionary_p8.npz')) as cached:
    dictionary = cached['dictionary']
  step_size = 1 / float(solvers.lipschitz_constant(dictionary))
  codes = solvers.iht(task_data.x_test, dictionary,
                      lam=config.l0_weight(step_size), step_size=step_size,
                      num_iterations=config.num_stages).codes
  np.testing.assert_allclose(
      results['units']['l0_p8']['initial_mean_test_code_nonzeros'],
      np.mean(np.count_nonzero(np.asarray(codes), axis=1)), atol=0.02)
  # W = mu D^T and theta = sqrt(2 lam mu) before training.
  scale = results['units']['l0_p8']['initial_encoder_scale']
  np.testing.assert_allclose(
      scale['input_weight_rms'],
      step_size * np.sqrt(np.mean(np.square(dictionary))), rtol=1e-5)
  np.testing.assert_allclose(
      scale['mean_threshold'],
      np.sqrt(2 * config.l0_weight(step_size) * step_size), rtol=1e-5)
  assert results['units']['l0_p8']['encoder_scale'] != scale
  for name in ('msparse_m2_p8', 'tdsc_p8'):
    assert results['units'][name]['encoder_scale'] is None


@pytest.mark.parametrize('changes, message', [
    (dict(dataset='cifar'), 'dataset must be one of'),
    (dict(code_dims=()), 'code_dims must be a non-empty tuple'),
    (dict(code_dims=[8]), 'code_dims must be a non-empty tuple'),
    (dict(encoders=('lista', 'sparse_pca')), 'encoders must be among'),
    (dict(ms=(9,)), 'M'),
    (dict(lam=0.0), 'lam must be positive'),
    (dict(optimizer='rmsprop'), 'optimizer must be one of'),
    (dict(min_sigma=0.5), 'min_sigma'),
    (dict(validation_fraction=1.0), 'validation_fraction'),
    (dict(dataset='indian_pines'), 'needs data_path'),
    (dict(max_train=1), 'max_train'),
])
def test_classification_config_errors(changes, message):
  with pytest.raises(ValueError, match=message):
    classification.ClassificationConfig(**{**TINY, **changes})


@pytest.mark.parametrize('module, name', [
    (classification, 'ClassificationConfig'), (clustering, 'ClusteringConfig')])
def test_run_rejects_other_configs(tmp_path, module, name):
  with pytest.raises(TypeError, match=name):
    module.run(tasks_common.TaskConfig.__new__(tasks_common.TaskConfig),
               str(tmp_path))


@pytest.fixture(name='mnist_dir')
def fixture_mnist_dir(tmp_path):
  """A fake mnist.npz: 96 training and 16 test blobs at random places."""
  rng = np.random.default_rng(3)
  rows, cols = np.mgrid[:28, :28]

  def blobs(count):
    centres = rng.uniform(8, 20, (count, 2, 1, 1))
    images = np.exp(-((rows - centres[:, 0]) ** 2 +
                      (cols - centres[:, 1]) ** 2) / 20)
    return (255 * images).astype(np.uint8)

  np.savez(tmp_path / 'mnist.npz', x_train=blobs(96),
           y_train=rng.integers(0, 10, 96), x_test=blobs(16),
           y_test=rng.integers(0, 10, 16))
  return str(tmp_path)


def _augmented_config(mnist_dir, **changes):
  return classification.ClassificationConfig(**{
      **TINY, 'dataset': 'mnist', 'data_path': mnist_dir, 'augment': True,
      'encoders': ('msparse',), 'batch_size': 16, **changes})


def _train_tiny(config, workdir):
  task_data = classification.load_classification_data(config)
  dictionary = np.random.default_rng(0).normal(size=(784, 8)) / 28
  model = tasks.TaskModel(
      tasks_common.build_encoder(config, dictionary, 'msparse', 2),
      task_data.num_classes)
  history = classification._fit_classifier(config, model, task_data, workdir)
  return history, nnx.state(model, nnx.Param)


def test_augmented_training_resumes_to_the_uninterrupted_run(
    mnist_dir, tmp_path, monkeypatch):
  config = _augmented_config(mnist_dir, num_epochs=3)
  history, params = _train_tiny(config, str(tmp_path / 'straight'))
  # Killed in epoch 3 (after epoch 2's checkpoint), then run again.
  evaluate = train.evaluate
  calls = []

  def killed_in_epoch_3(*args, **kwargs):
    calls.append(1)
    if len(calls) == 3:
      raise KeyboardInterrupt
    return evaluate(*args, **kwargs)

  monkeypatch.setattr(train, 'evaluate', killed_in_epoch_3)
  with pytest.raises(KeyboardInterrupt):
    _train_tiny(config, str(tmp_path / 'resumed'))
  monkeypatch.setattr(train, 'evaluate', evaluate)
  resumed_history, resumed_params = _train_tiny(config,
                                                str(tmp_path / 'resumed'))
  assert len(history) == 3
  assert ([record['train_loss'] for record in history] ==
          [record['train_loss'] for record in resumed_history])
  chex.assert_trees_all_close(params, resumed_params)


# With NO_AUGMENTATION the batches are the standardized source images.
@pytest.mark.parametrize('augmentation', [augment.AugmentConfig(),
                                          augment.NO_AUGMENTATION])
def test_the_augmented_stream_distorts_the_images_of_each_step(augmentation):
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(20, 28, 28)).astype(np.float32)
  labels = np.arange(20) % 3
  key = jax.random.PRNGKey(4)
  stream = classification.augmented_stream(key, images, labels, 6,
                                           augmentation)
  assert stream.steps_per_epoch == 3
  assert stream.data_id == checkpoint.data_fingerprint(images, labels)
  order_key, augment_key = jax.random.split(key)
  for epoch in range(2):
    order = np.asarray(jax.random.permutation(
        jax.random.fold_in(order_key, epoch), 20))
    seen = []
    for position in range(3):
      step = epoch * 3 + position
      inputs, targets = jax.jit(stream.batch_fn)(step)
      indices = order[position * 6:(position + 1) * 6]
      expected = augment.augment(jax.random.fold_in(augment_key, step),
                                 images[indices], augmentation)
      chex.assert_shape(inputs, (6, 784))
      np.testing.assert_allclose(
          inputs, tasks_common.standardize_rows(np.asarray(expected)),
          atol=2e-4)
      np.testing.assert_array_equal(targets, labels[indices])
      seen.extend(indices)
    assert len(set(seen)) == len(seen)  # Each image at most once an epoch.


@pytest.mark.parametrize('images, labels, batch_size, message', [
    (np.zeros((4, 784)), np.zeros(4), 2, 'images must have shape'),
    (np.zeros((4, 28, 28)), np.zeros(3), 2, 'images must have shape'),
    (np.zeros((4, 28, 28)), np.zeros(4), 5, 'batch_size'),
])
def test_the_augmented_stream_rejects_bad_input(images, labels, batch_size,
                                                message):
  with pytest.raises(ValueError, match=message):
    classification.augmented_stream(jax.random.PRNGKey(0), images, labels,
                                    batch_size)


def test_augmentation_changes_the_training_data(mnist_dir, tmp_path):
  config = _augmented_config(mnist_dir, num_epochs=1)
  task_data = classification.load_classification_data(config)
  plain = classification.load_classification_data(dataclasses.replace(config,
                                                          augment=False))
  assert plain.train_images is None
  chex.assert_shape(task_data.train_images, (len(task_data.x_train), 28, 28))
  # The kept images are the ones x_train was standardized from.
  np.testing.assert_allclose(
      tasks_common.standardize_rows(task_data.train_images),
      task_data.x_train, atol=1e-5)
  augmented, _ = _train_tiny(config, str(tmp_path / 'augmented'))
  clean, _ = _train_tiny(dataclasses.replace(config, augment=False),
                         str(tmp_path / 'clean'))
  assert augmented[0]['train_loss'] != clean[0]['train_loss']
  results = {'experiment': 'classification',
             'config': tasks_common.jsonable(config),
             'data': {'num_test': 16, 'num_train': 86, 'num_validation': 10,
                      'description': task_data.description}}
  assert 'augmented afresh each epoch' in task_reports._caption(results)


@pytest.mark.parametrize('changes', [dict(dataset='synthetic'),
                                     dict(mnist_image_size=14)])
def test_augment_needs_full_size_mnist(mnist_dir, changes):
  with pytest.raises(ValueError, match='augment distorts 28 x 28 digits'):
    _augmented_config(mnist_dir, **changes)


@pytest.mark.parametrize('image_size', [28, 12])
def test_mnist_whitening_is_fitted_on_the_training_split(mnist_dir,
                                                         image_size):
  config = classification.ClassificationConfig(**{
      **TINY, 'dataset': 'mnist', 'data_path': mnist_dir,
      'mnist_image_size': image_size, 'whitening_epsilon': 0.1})
  whitened = classification.load_classification_data(config)
  plain = classification.load_classification_data(dataclasses.replace(
      config, whitening_epsilon=None))
  assert 'ZCA-whitened (eps = 0.1' in whitened.description
  # The same ZCA, fitted on the training images (fit and validation parts),
  # maps each split; every image is then standardized again.
  train_x = np.concatenate([plain.x_train, plain.x_validation])
  zca = whitening.fit_zca(train_x, 0.1)
  for name in ('x_train', 'x_validation', 'x_test'):
    np.testing.assert_allclose(
        getattr(whitened, name),
        whitening.whiten_patches(zca, getattr(plain, name)), atol=1e-4)
    np.testing.assert_allclose(getattr(whitened, name).std(1), 1, rtol=1e-4)


@pytest.mark.parametrize('changes, message', [
    (dict(whitening_epsilon=0.0), 'whitening_epsilon'),
    (dict(whitening_epsilon=0.1, augment=True), 'cannot be combined'),
])
def test_whitening_config_errors(mnist_dir, changes, message):
  with pytest.raises(ValueError, match=message):
    classification.ClassificationConfig(**{**TINY, 'dataset': 'mnist',
                               'data_path': mnist_dir, **changes})
