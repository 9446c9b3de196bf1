"""Tests of configs.to_settings (l0enc.experiments.configs)."""

import dataclasses

import ml_collections
import pytest

from l0enc.experiments import configs


@dataclasses.dataclass(frozen=True)
class Settings:
  lam: float = 0.5
  sizes: tuple[int, ...] = (1,)
  grid: tuple[tuple[float, ...], ...] = ()
  name: str = 'default'

  def __post_init__(self):
    if self.lam <= 0:
      raise ValueError(f'lam must be positive, got {self.lam}.')


def as_config_dict(fields):
  return ml_collections.ConfigDict(fields)


@pytest.mark.parametrize('wrap', [dict, as_config_dict])
def test_lists_become_tuples(wrap):
  settings = configs.to_settings(
      Settings, wrap({'sizes': [1, 2], 'grid': [[0.1, 0.2], [0.3]]}))
  assert settings.sizes == (1, 2)
  assert settings.grid == ((0.1, 0.2), (0.3,))
  hash(settings)  # Frozen and hashable, as the experiments need.


@pytest.mark.parametrize('wrap', [dict, as_config_dict])
def test_fields_left_out_keep_the_defaults(wrap):
  assert configs.to_settings(Settings, wrap({'lam': 2.0})) == Settings(
      lam=2.0)


def test_overrides_come_after_the_config():
  settings = configs.to_settings(Settings, {'lam': 2.0, 'name': 'config'},
                                 name='derived')
  assert settings == Settings(lam=2.0, name='derived')


@pytest.mark.parametrize('fields, overrides', [
    ({'lamda': 1.0}, {}), ({}, {'lamda': 1.0})])
def test_an_unknown_field_is_named(fields, overrides):
  with pytest.raises(ValueError, match=r"\['lamda'\].*Settings"):
    configs.to_settings(Settings, fields, **overrides)


def test_the_dataclass_validation_error_surfaces():
  with pytest.raises(ValueError, match='lam must be positive, got -1'):
    configs.to_settings(Settings, as_config_dict({'lam': -1.0}))
