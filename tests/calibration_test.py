"""Tests of the calibration rule on tiny synthetic problems."""

import dataclasses
import math
import os

import numpy as np
import pytest

from l0enc import reporting
from l0enc import synthetic
from l0enc.experiments import approximation
from l0enc.experiments import calibration

import jax


def tiny_problem(condition: float, seed: int = 0):
  """Signals of a random unit-norm dictionary whose spectrum spans `condition`."""
  problem = synthetic.make_synthetic(jax.random.PRNGKey(seed), 300,
                                     signal_dim=16, code_dim=32,
                                     nonzero_prob=0.1, snr_db=30)
  dictionary = np.asarray(problem.dictionary)
  u, s, vt = np.linalg.svd(dictionary, full_matrices=False)
  skewed = u @ np.diag(s * np.geomspace(1, condition, len(s))) @ vt
  skewed /= np.linalg.norm(skewed, axis=0)
  codes = np.asarray(problem.codes)
  noise = 0.01 * np.random.default_rng(seed).normal(size=(300, 16))
  return codes @ skewed.T + noise, skewed


CONFIG = approximation.Config(code_dim=32, lam=0.02, m=3)


def test_iht_rows_have_every_cell_and_fall_with_iterations():
  x, dictionary = tiny_problem(1.0)
  scored = calibration.iht_rows(x, dictionary, CONFIG)
  assert set(scored['rows']) == set(calibration.TABLES)
  for table in ('l0', 'msparse'):
    errors = scored['rows'][table]
    assert len(errors) == 3 and errors[0] > errors[2] >= 0
  np.testing.assert_allclose(scored['lipschitz'],
                             np.linalg.norm(dictionary, 2) ** 2, rtol=1e-4)
  assert 0 < scored['coherence'] <= 1


def test_distance_is_mean_absolute_log_ratio():
  target = {'l0': [10.0, 5.0, 2.0]}
  assert calibration.distance(target, target) == 0
  rows = {'l0': [20.0, 2.5, 2.0]}
  np.testing.assert_allclose(calibration.distance(rows, target),
                             2 * math.log(2) / 3)
  np.testing.assert_allclose(calibration.largest_relative_gap(rows, target),
                             1.0)


def test_select_picks_the_grid_point_whose_rows_match_the_target():
  # Score three differently conditioned dictionaries against a target
  # that is the middle one's own rows: the rule must choose it, at each p.
  scored = {condition: calibration.iht_rows(*tiny_problem(condition), CONFIG)
            for condition in (1.0, 4.0, 30.0)}
  target = scored[4.0]['rows']
  # The three problems differ: only the middle one is at distance zero.
  assert sorted(calibration.distance(rows['rows'], target) > 0.05
                for rows in scored.values()) == [False, True, True]
  points = [{'config': {'code_dim': code_dim, 'condition': condition},
             'distance': calibration.distance(rows['rows'], target)}
            for code_dim in (32, 64) for condition, rows in scored.items()]
  chosen = calibration.select(points)
  assert sorted(chosen) == [32, 64]
  assert all(point['config']['condition'] == 4.0
             for point in chosen.values())


def test_select_breaks_ties_towards_the_earlier_point():
  points = [{'config': {'code_dim': 8, 'name': name}, 'distance': 0.5}
            for name in ('first', 'second')]
  assert calibration.select(points)[8]['config']['name'] == 'first'


def test_paper_rows_are_the_papers_iht_rows():
  rows = calibration.paper_rows(256)
  assert rows['l0'] == [18.73, 6.75, 4.33]
  assert rows['support'] == [13.4, 8.0, 5.6]
  with pytest.raises(ValueError, match='code_dim'):
    calibration.paper_rows(100)


def test_read_choice_names_a_missing_file(tmp_path):
  with pytest.raises(ValueError, match='calibrate_regime'):
    calibration.read_choice(str(tmp_path / 'missing.json'))


def test_finished_points_keep_only_the_same_fixed_settings(tmp_path):
  for code_dim, epsilon, lam, seed in [(256, 0.3, 1.0, 0), (128, 1.0, 0.5, 0),
                                       (128, 0.1, 0.5, 0), (128, 0.1, 0.5, 1)]:
    config = approximation.Config(dataset='mnist', code_dim=code_dim,
                                  whitening_epsilon=epsilon,
                                  dictionary_lam=lam, seed=seed)
    path = calibration.point_path(str(tmp_path), config)
    reporting.write_json_atomic(
        path.replace('.json', f'_seed{seed}.json'),
        {'config': approximation.config_to_json(config), 'distance': 1.0})
  points = calibration.finished_points(
      str(tmp_path), approximation.Config(dataset='mnist', code_dim=512,
                                          whitening_epsilon=0.01))
  assert [(p['config']['code_dim'], p['config']['whitening_epsilon'])
          for p in points] == [(128, 0.1), (128, 1.0), (256, 0.3)]


def test_grid_configs_cover_every_point():
  grid = calibration.Grid(whitening_epsilons=(0.1, 0.3),
                          dictionary_lams=(0.5,), lam=0.2, m=4)
  points = grid.configs((128, 256), data_dir='/data')
  assert [(c.code_dim, c.whitening_epsilon, c.dictionary_lam)
          for c in points] == [(128, 0.1, 0.5), (128, 0.3, 0.5),
                               (256, 0.1, 0.5), (256, 0.3, 0.5)]
  assert all(c.dataset == 'mnist' and c.lam == 0.2 and c.m == 4 and
             c.data_dir == '/data' and not c.tight_frame for c in points)


def test_grid_tries_tight_frames_at_every_point_and_names_their_files():
  grid = calibration.Grid(whitening_epsilons=(0.01,), dictionary_lams=(0.1,),
                          tight_frames=(False, True))
  points = grid.configs((512,))
  assert [c.tight_frame for c in points] == [False, True]
  names = [os.path.basename(calibration.point_path('/w', c)) for c in points]
  # The untight point keeps the name points had before tight frames.
  assert names == ['p512_zca0.01_lam0.1.json', 'p512_zca0.01_lam0.1_tight.json']


def test_read_choice_of_a_choice_made_before_tight_frames(tmp_path):
  old = {'code_dim': 256, 'dataset': 'mnist', 'whitening_epsilon': 0.01,
         'dictionary_lam': 0.25}  # A point's config as written before.
  new = approximation.config_to_json(approximation.Config(
      dataset='mnist', code_dim=512, whitening_epsilon=0.01,
      dictionary_lam=0.1, tight_frame=True))
  path = str(tmp_path / 'results.json')
  reporting.write_json_atomic(path, {'chosen': {'256': {'config': old},
                                                '512': {'config': new}}})
  assert calibration.read_choice(path) == {
      256: {'whitening_epsilon': 0.01, 'dictionary_lam': 0.25,
            'tight_frame': False},
      512: {'whitening_epsilon': 0.01, 'dictionary_lam': 0.1,
            'tight_frame': True}}


@pytest.mark.parametrize('override,match', [
    (dict(whitening_epsilons=()), 'whitening_epsilons'),
    (dict(whitening_epsilons=(0.1, 0.0)), 'whitening_epsilons'),
    (dict(dictionary_lams=(-1.0,)), 'dictionary_lams'),
    (dict(num_signals=0), 'num_signals'),
    (dict(literal_results='/missing.json'), 'literal_results'),
    (dict(tight_frames=()), 'tight_frames'),
    (dict(tight_frames=(1,)), 'tight_frames'),
])
def test_bad_grid_raises_naming_the_field(override, match):
  with pytest.raises(ValueError, match=match):
    calibration.Grid(**override)


def test_grid_refuses_a_p_the_paper_does_not_report():
  with pytest.raises(ValueError, match='code_dim=100'):
    calibration.Grid().configs((100,))


def test_a_finished_point_is_read_back(tmp_path, monkeypatch):
  config = approximation.Config(dataset='mnist', code_dim=128,
                                whitening_epsilon=0.1, data_dir='/data')
  point = {'config': approximation.config_to_json(
      dataclasses.replace(config, data_dir=None)), 'distance': 0.5}
  reporting.write_json_atomic(calibration.point_path(str(tmp_path), config),
                              point)
  monkeypatch.setattr(approximation, 'load_signals', None)  # Not called.
  assert calibration.calibrate_point(config, str(tmp_path), None, 10) == point
  with pytest.raises(ValueError, match='another configuration.*seed'):
    calibration.calibrate_point(dataclasses.replace(config, seed=1),
                                str(tmp_path), None, 10)
