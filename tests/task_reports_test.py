"""Tests of l0enc.experiments.task_reports (tables and plots of Tables 4-7)."""

import os

import pytest

from l0enc.experiments import clustering
from l0enc.experiments import task_reports
from l0enc.experiments import tasks_common
import task_runs


@pytest.fixture(name='classification_run')
def fixture_classification_run():
  return task_runs.classification_run()


@pytest.fixture(name='clustering_run')
def fixture_clustering_run():
  return task_runs.clustering_run()


def test_tables_and_plots(classification_run, clustering_run, tmp_path):
  _, _, classified = classification_run
  _, _, clustered = clustering_run
  table = task_reports.paper_table(classified)
  assert 'Tuned LISTA' in table and 'Deep M-Sparse (M = 2)' in table
  assert '| TDSC |' in table and 'lam2 = 0.1' in table
  assert '10 epochs' not in table and '2 epochs end to end' in table
  table = task_reports.paper_table(clustered)
  assert 'k-means on the inputs (reference)' in table
  assert 'without labels' in table
  task_reports.plot_learning_curves([classified, clustered],
                                    str(tmp_path / 'curves.png'))
  best = task_reports.plot_confusion_matrix(classified,
                                            str(tmp_path / 'cm.png'))
  assert best in classified['units']
  assert os.path.getsize(tmp_path / 'curves.png') > 0
  assert os.path.getsize(tmp_path / 'cm.png') > 0


def test_a_row_keeps_its_colour_across_panels(monkeypatch):
  history = [{'epoch': 1, 'train_loss': 1.0, 'eval_metrics': {'error': 5.0}}]
  unit = lambda row, code_dim: {'row': row, 'unit': {'code_dim': code_dim},
                                'history': history}
  result = lambda dataset, units: {
      'experiment': 'classification',
      'config': {'dataset': dataset, 'code_dims': [8]}, 'units': units}
  # The second data set lacks the first's first row, so a per-panel colour
  # cycle would give 'b' another colour there.
  results = [result('mnist', {'a': unit('a', 8), 'b': unit('b', 8)}),
             result('indian_pines', {'b': unit('b', 8), 'c': unit('c', 8)})]
  figures = []
  monkeypatch.setattr(task_reports.reporting, 'save_figure_atomic',
                      lambda figure, path, dpi: figures.append(figure))
  task_reports.plot_learning_curves(results, 'unused.png')
  colours = {}
  for axes in figures[0].axes:
    for line in axes.get_lines():
      colours.setdefault(line.get_label(), set()).add(line.get_color())
  assert sorted(colours) == ['a', 'b', 'c']
  assert all(len(found) == 1 for found in colours.values())
  assert len(set.union(*colours.values())) == 3


def test_paper_numbers_in_brackets_at_the_paper_settings():
  unit = {'unit': {'encoder': 'l0', 'code_dim': 256, 'm': None},
          'row': 'Deep l0-Regularized', 'error': 20.0}
  config = tasks_common.jsonable(clustering.ClusteringConfig(
      dataset='coil20', data_path='x', code_dims=(256,)))
  results = {'experiment': 'clustering', 'config': config,
             'data': {'description': 'd', 'num_samples': 1440},
             'units': {'l0_p256': unit}}
  table = task_reports.paper_table(results)
  assert '| Deep l0-Regularized | 20.00 (14.27) |' in table
  # The paper's other rows are listed, with no number of ours.
  assert '| (Wang et al. 2015a) | — (17.14) |' in table


def test_best_classifier_needs_a_finished_unit():
  results = {'config': {'dataset': 'mnist'}, 'units': {'lista_p8': {}}}
  with pytest.raises(ValueError, match='nothing to report'):
    task_reports.best_classifier(results)


def test_nonzeros_table_shows_before_and_after():
  def unit(encoder, code_dim, after, before=None):
    result = {'unit': {'encoder': encoder, 'code_dim': code_dim, 'm': None},
              'row': tasks_common.row_name(encoder),
              'mean_test_code_nonzeros': after}
    if before is not None:
      result['initial_mean_test_code_nonzeros'] = before
    return result

  results = {'experiment': 'classification',
             'config': {'code_dims': [128, 256]}, 'units': {
      'l0_p128': unit('l0', 128, 120.04, 30.46),
      'l0_p256': unit('l0', 256, 250.0),  # Written before "before" existed.
      'lista_p128': unit('lista', 128, 60.0, 61.24)}}
  lines = task_reports.nonzeros_table(results).splitlines()
  assert 'of the test codes' in lines[0]
  assert lines[2] == '| method | p = 128 | p = 256 |'
  assert lines[4] == '| Deep l0-Regularized | 30.5 → 120.0 | 250.0 |'
  assert lines[5] == '| Tuned LISTA | 61.2 → 60.0 | — |'


def test_validation_table_shows_the_validation_errors():
  def unit(encoder, code_dim, error):
    return {'unit': {'encoder': encoder, 'code_dim': code_dim, 'm': None},
            'row': tasks_common.row_name(encoder), 'validation_error': error}

  results = {'experiment': 'classification',
             'config': {'code_dims': [128, 256]}, 'units': {
                 'l0_p128': unit('l0', 128, 12.345),
                 'fc_p256': unit('fc', 256, 7.0)}}
  lines = task_reports.validation_table(results).splitlines()
  assert lines[0].startswith('Validation error (%)')
  assert lines[4:] == ['| Deep l0-Regularized | 12.35 | — |',
                       '| Fully connected ReLU (reference) | — | 7.00 |']


def test_clustering_nonzeros_table_leaves_out_the_k_means_references():
  l0 = {'unit': {'encoder': 'l0', 'code_dim': 128, 'm': None},
        'row': tasks_common.row_name('l0'), 'mean_code_nonzeros': 40.0,
        'initial_mean_code_nonzeros': 50.0}
  kmeans = {'unit': {'encoder': 'kmeans_codes', 'code_dim': 128, 'm': None},
            'row': tasks_common.row_name('kmeans_codes')}
  results = {'experiment': 'clustering', 'config': {'code_dims': [128]},
             'units': {'kmeans_codes_p128': kmeans, 'l0_p128': l0}}
  lines = task_reports.nonzeros_table(results).splitlines()
  assert 'of the codes of all samples' in lines[0]
  assert lines[4:] == ['| Deep l0-Regularized | 50.0 → 40.0 |']
  del results['units']['l0_p128']  # Older runs recorded no nonzeros.
  assert task_reports.nonzeros_table(results) == ''


def test_scale_table_shows_thresholding_rows_before_and_after():
  def unit(encoder, code_dim, scales=None):
    result = {'unit': {'encoder': encoder, 'code_dim': code_dim, 'm': None},
              'row': tasks_common.row_name(encoder)}
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
  lines = task_reports.scale_table(results).splitlines()
  assert lines[2] == '| method | p = 128 | p = 256 |'
  assert lines[4:] == [
      '| Deep l0-Regularized | W 0.001 → 0.017, θ 0.05 → 0.049 | — |']
  del results['units']['l0_p128']
  assert task_reports.scale_table(results) == ''
