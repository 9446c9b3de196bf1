"""Tests of the classification and clustering experiments on tiny data."""

import dataclasses
import json
import os

import chex
from flax import nnx
import numpy as np
import pytest

from l0enc import solvers
from l0enc import tasks
from l0enc.experiments import tasks_common as te
from l0enc import validation
from l0enc import whitening

TINY = dict(dataset='synthetic', code_dims=(8,), ms=(2,), num_epochs=2,
            lista_pretrain_epochs=1, dictionary_steps=2, codes_iterations=10,
            num_synthetic=192, signal_dim=6, num_classes=3, batch_size=32)


@pytest.fixture(scope='module')
def classification_run(tmp_path_factory):
  config = te.ClassificationConfig(encoders=('lista', 'l0', 'msparse', 'tdsc'),
                                   tdsc_iterations=20, **TINY)
  workdir = str(tmp_path_factory.mktemp('classification'))
  return config, workdir, te.run(config, workdir)


@pytest.fixture(scope='module')
def clustering_run(tmp_path_factory):
  config = te.ClusteringConfig(encoders=('l0',), kmeans_restarts=2,
                               kmeans_iterations=5, **TINY)
  workdir = str(tmp_path_factory.mktemp('clustering'))
  return config, workdir, te.run(config, workdir)


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
  assert te.run(config, workdir)['units'] == results['units']
  # A unit whose result was lost is rebuilt from its last checkpoint: the
  # same model, so the same numbers, without training again.
  os.remove(os.path.join(workdir, 'msparse_m2_p8', 'result.json'))
  again = te.run(config, workdir)['units']['msparse_m2_p8']
  before = results['units']['msparse_m2_p8']
  assert again['test_error'] == before['test_error']
  assert again['history'] == before['history']
  # Other settings may not share the workdir.
  with pytest.raises(ValueError, match='other settings'):
    te.run(dataclasses.replace(config, lam=2.0), workdir)


def test_settings_written_before_a_field_existed_match_its_default(
    classification_run, tmp_path):
  config, workdir, _ = classification_run
  path = os.path.join(workdir, 'settings.json')
  with open(path) as handle:
    settings = json.load(handle)
  del settings['spatial_window']  # As written before the field existed.
  older = tmp_path / 'older'
  older.mkdir()
  (older / 'settings.json').write_text(json.dumps(settings))
  te._check_settings(config, str(older))
  with pytest.raises(ValueError, match='other settings'):
    te._check_settings(dataclasses.replace(config, spatial_window=3),
                       str(older))


@pytest.mark.parametrize('scale', [1.0, 5.0])
def test_deep_l0_starts_from_the_lista_threshold(scale):
  config = te.ClassificationConfig(**TINY)
  dictionary = scale * np.random.default_rng(0).normal(size=(6, 8))
  lista = te.build_encoder(config, dictionary, 'lista')
  deep_l0 = te.build_encoder(config, dictionary, 'l0')
  np.testing.assert_allclose(deep_l0.threshold[...], lista.threshold[...],
                             rtol=1e-5)
  explicit = dataclasses.replace(config, l0_lam=0.3)
  assert explicit.l0_weight(step_size=0.01) == 0.3


def test_report_only_trains_nothing_and_leaves_out_missing_units(
    classification_run, tmp_path):
  config, workdir, results = classification_run
  more = dataclasses.replace(config, code_dims=(8, 12))
  reported = te.run(more, workdir, report_only=True)
  assert list(reported['units']) == list(results['units'])
  for name, unit in reported['units'].items():
    assert unit['test_error'] == results['units'][name]['test_error']
  assert not os.path.exists(os.path.join(workdir, 'lista_p12'))
  assert '| — |' in te.paper_table(reported)


def test_clustering_results(clustering_run):
  config, workdir, results = clustering_run
  assert list(results['units']) == ['kmeans_input', 'kmeans_codes_p8',
                                    'l0_p8']
  for unit in results['units'].values():
    assert 0 <= unit['error'] < 100 and 0 <= unit['nmi'] <= 1
    assert 1 <= unit['clusters_used'] <= config.num_classes
  trained = results['units']['l0_p8']
  assert len(trained['history']) == config.num_epochs
  assert trained['temperature'] > 0
  assert 'error' in trained['initial_kmeans']
  assert te.run(config, workdir)['units'] == results['units']
  assert os.path.exists(os.path.join(workdir, 'l0_p8', 'train',
                                     'checkpoint.json'))


def test_tables_and_plots(classification_run, clustering_run, tmp_path):
  _, _, classification = classification_run
  _, _, clustering = clustering_run
  table = te.paper_table(classification)
  assert 'Tuned LISTA' in table and 'Deep M-Sparse (M = 2)' in table
  assert '| TDSC |' in table and 'lam2 = 0.1' in table
  assert '10 epochs' not in table and '2 epochs end to end' in table
  table = te.paper_table(clustering)
  assert 'k-means on the inputs (reference)' in table
  assert 'without labels' in table
  te.plot_learning_curves([classification, clustering],
                          str(tmp_path / 'curves.png'))
  best = te.plot_confusion_matrix(classification, str(tmp_path / 'cm.png'))
  assert best in classification['units']
  assert os.path.getsize(tmp_path / 'curves.png') > 0
  assert os.path.getsize(tmp_path / 'cm.png') > 0


def test_paper_numbers_in_brackets_at_the_paper_settings():
  unit = {'unit': {'encoder': 'l0', 'code_dim': 256, 'm': None},
          'row': 'Deep l0-Regularized', 'error': 20.0}
  config = te.jsonable(te.ClusteringConfig(dataset='coil20', data_path='x',
                                           code_dims=(256,)))
  results = {'experiment': 'clustering', 'config': config,
             'data': {'description': 'd', 'num_samples': 1440},
             'units': {'l0_p256': unit}}
  table = te.paper_table(results)
  assert '| Deep l0-Regularized | 20.00 (14.27) |' in table
  # The paper's other rows are listed, with no number of ours.
  assert '| (Wang et al. 2015a) | — (17.14) |' in table


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
    te.ClassificationConfig(**{**TINY, **changes})


@pytest.mark.parametrize('changes, message', [
    (dict(dataset='mnist'), 'dataset must be one of'),
    (dict(dataset='pie'), 'needs data_path'),
    (dict(encoders=('tdsc',)), 'encoders must be among'),
    (dict(marginal_weight=-1.0), 'marginal_weight'),
    (dict(kmeans_restarts=0), 'kmeans_restarts'),
])
def test_clustering_config_errors(changes, message):
  with pytest.raises(ValueError, match=message):
    te.ClusteringConfig(**{**TINY, **changes})


def test_run_rejects_other_configs(tmp_path):
  with pytest.raises(TypeError, match='ClassificationConfig'):
    te.run(te.TaskConfig.__new__(te.TaskConfig), str(tmp_path))


def test_stratified_split_and_standardization():
  labels = np.array([0] * 10 + [1] * 5 + [2] * 1)
  kept, held_out = te.stratified_split(labels, 0.2, seed=0)
  assert np.bincount(labels[held_out], minlength=3).tolist() == [2, 1, 0]
  assert sorted(np.concatenate([kept, held_out]).tolist()) == list(range(16))
  x = np.random.default_rng(0).normal(size=(4, 3, 3)) * 5 + 2
  standardized = te.standardize_rows(x)
  assert standardized.shape == (4, 9)
  np.testing.assert_allclose(standardized.mean(1), 0, atol=1e-6)
  np.testing.assert_allclose(standardized.std(1), 1, rtol=1e-5)
  with pytest.raises(ValueError, match='constant'):
    te.standardize_rows(np.ones((2, 4)))


def test_best_classifier_needs_a_finished_unit():
  results = {'config': {'dataset': 'mnist'}, 'units': {'lista_p8': {}}}
  with pytest.raises(ValueError, match='nothing to report'):
    te.best_classifier(results)


def test_initial_code_nonzeros_are_those_of_iht(classification_run):
  """The untrained Deep l0 encoder is K iterations of IHT (eq. 8)."""
  config, workdir, results = classification_run
  task_data = te.load_classification_data(config)
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
  return te.ClassificationConfig(**{
      **TINY, 'dataset': 'mnist', 'data_path': mnist_dir, 'augment': True,
      'encoders': ('msparse',), 'batch_size': 16, **changes})


def _train_tiny(config, workdir):
  task_data = te.load_classification_data(config)
  dictionary = np.random.default_rng(0).normal(size=(784, 8)) / 28
  model = tasks.TaskModel(te.build_encoder(config, dictionary, 'msparse', 2),
                          task_data.num_classes)
  history = te._fit_classifier(config, model, task_data, workdir)
  return history, nnx.state(model, nnx.Param)


def test_augmented_training_resumes_to_the_uninterrupted_run(mnist_dir,
                                                            tmp_path):
  config = _augmented_config(mnist_dir, num_epochs=3)
  history, params = _train_tiny(config, str(tmp_path / 'straight'))
  # Stopped after epoch 2, then restarted from scratch in a new process.
  _train_tiny(dataclasses.replace(config, num_epochs=2),
              str(tmp_path / 'resumed'))
  resumed_history, resumed_params = _train_tiny(config,
                                                str(tmp_path / 'resumed'))
  assert len(history) == 3
  assert ([record['train_loss'] for record in history] ==
          [record['train_loss'] for record in resumed_history])
  chex.assert_trees_all_close(params, resumed_params)


def test_augmentation_changes_the_training_data(mnist_dir, tmp_path):
  config = _augmented_config(mnist_dir, num_epochs=1)
  task_data = te.load_classification_data(config)
  plain = te.load_classification_data(dataclasses.replace(config,
                                                          augment=False))
  assert plain.train_images is None
  chex.assert_shape(task_data.train_images, (len(task_data.x_train), 28, 28))
  # The kept images are the ones x_train was standardized from.
  np.testing.assert_allclose(te.standardize_rows(task_data.train_images),
                             task_data.x_train, atol=1e-5)
  augmented, _ = _train_tiny(config, str(tmp_path / 'augmented'))
  clean, _ = _train_tiny(dataclasses.replace(config, augment=False),
                         str(tmp_path / 'clean'))
  assert augmented[0]['train_loss'] != clean[0]['train_loss']
  results = {'experiment': 'classification',
             'config': te.jsonable(config),
             'data': {'num_test': 16, 'num_train': 86, 'num_validation': 10,
                      'description': task_data.description}}
  assert 'augmented afresh each epoch' in te._caption(results)


@pytest.mark.parametrize('changes', [dict(dataset='synthetic'),
                                     dict(mnist_image_size=14)])
def test_augment_needs_full_size_mnist(mnist_dir, changes):
  with pytest.raises(ValueError, match='augment distorts 28 x 28 digits'):
    _augmented_config(mnist_dir, **changes)


def test_nonzeros_table_shows_before_and_after():
  def unit(encoder, code_dim, after, before=None):
    result = {'unit': {'encoder': encoder, 'code_dim': code_dim, 'm': None},
              'row': te.row_name(encoder), 'mean_test_code_nonzeros': after}
    if before is not None:
      result['initial_mean_test_code_nonzeros'] = before
    return result

  results = {'config': {'code_dims': [128, 256]}, 'units': {
      'l0_p128': unit('l0', 128, 120.04, 30.46),
      'l0_p256': unit('l0', 256, 250.0),  # Written before "before" existed.
      'lista_p128': unit('lista', 128, 60.0, 61.24)}}
  lines = te.nonzeros_table(results).splitlines()
  assert lines[2] == '| method | p = 128 | p = 256 |'
  assert lines[4] == '| Deep l0-Regularized | 30.5 → 120.0 | 250.0 |'
  assert lines[5] == '| Tuned LISTA | 61.2 → 60.0 | — |'


def test_scale_table_shows_thresholding_rows_before_and_after():
  def unit(encoder, code_dim, scales=None):
    result = {'unit': {'encoder': encoder, 'code_dim': code_dim, 'm': None},
              'row': te.row_name(encoder)}
    if scales is not None:
      result['initial_encoder_scale'], result['encoder_scale'] = (
          {'input_weight_rms': rms, 'mean_threshold': threshold}
          for rms, threshold in scales)
    return result

  results = {'config': {'code_dims': [128, 256]}, 'units': {
      'l0_p128': unit('l0', 128, [(0.001, 0.05), (0.017, 0.049)]),
      'l0_p256': unit('l0', 256),  # Written before the scales existed.
      'msparse_p128': {**unit('msparse', 128), 'encoder_scale': None,
                       'initial_encoder_scale': None},
      'tdsc_p128': unit('tdsc', 128)}}
  lines = te.scale_table(results).splitlines()
  assert lines[2] == '| method | p = 128 | p = 256 |'
  assert lines[4:] == [
      '| Deep l0-Regularized | W 0.001 → 0.017, θ 0.05 → 0.049 | — |']
  del results['units']['l0_p128']
  assert te.scale_table(results) == ''


@pytest.mark.parametrize('image_size', [28, 12])
def test_mnist_whitening_is_fitted_on_the_training_split(mnist_dir,
                                                         image_size):
  config = te.ClassificationConfig(**{
      **TINY, 'dataset': 'mnist', 'data_path': mnist_dir,
      'mnist_image_size': image_size, 'whitening_epsilon': 0.1})
  whitened = te.load_classification_data(config)
  plain = te.load_classification_data(dataclasses.replace(
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


def test_whitening_without_per_image_standardization_for_the_mixture():
  config = te.ClusteringConfig(encoders=('l0',), whitening_epsilon=0.5,
                               **TINY)
  whitened = te.load_clustering_data(config)
  plain = te.load_clustering_data(dataclasses.replace(
      config, whitening_epsilon=None))
  np.testing.assert_allclose(
      whitened.x, whitening.apply(whitening.fit_zca(plain.x, 0.5), plain.x),
      atol=1e-5)


@pytest.mark.parametrize('changes, message', [
    (dict(whitening_epsilon=0.0), 'whitening_epsilon'),
    (dict(whitening_epsilon=0.1, augment=True), 'cannot be combined'),
])
def test_whitening_config_errors(mnist_dir, changes, message):
  with pytest.raises(ValueError, match=message):
    te.ClassificationConfig(**{**TINY, 'dataset': 'mnist',
                               'data_path': mnist_dir, **changes})


def test_a_damaged_cache_names_the_file(tmp_path):
  path = str(tmp_path / 'codes.npz')
  compute = lambda: {'codes': np.arange(6.0).reshape(2, 3)}
  first = te._cached_arrays(path, compute)
  np.testing.assert_array_equal(
      te._cached_arrays(path, compute)['codes'],
      first['codes'])
  with open(path, 'r+b') as handle:
    handle.truncate(40)
  with pytest.raises(validation.DamagedFileError,
                     match='codes.npz is damaged.*delete it and rerun'):
    te._cached_arrays(path, compute)
