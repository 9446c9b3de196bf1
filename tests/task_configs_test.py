"""Tests of l0enc.experiments.task_configs and the config files it builds."""

import importlib.util
import os

import pytest

from l0enc.experiments import classification
from l0enc.experiments import clustering
from l0enc.experiments import task_configs

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)


def _config_file(name):
  path = os.path.join(ROOT, 'experiments', 'configs', f'{name}.py')
  spec = importlib.util.spec_from_file_location(f'_config_{name}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


@pytest.mark.parametrize('name, cls, dataset, expected', [
    ('classification_quick', classification.ClassificationConfig, 'mnist',
     dict(code_dims=(128,), lam=1.0, num_epochs=8, lista_pretrain_epochs=4,
          dictionary_steps=100, max_train=10_000,
          encoders=classification.ENCODERS)),
    ('classification_paper', classification.ClassificationConfig,
     'indian_pines',
     dict(code_dims=(128, 256, 512), lam=3.0, head_weight_decay=1e-3,
          num_epochs=300, lista_pretrain_epochs=50, dictionary_steps=1_000,
          encoders=classification.ENCODERS)),
    ('clustering_quick', clustering.ClusteringConfig, 'pie',
     dict(code_dims=(128,), lam=1.0, learning_rate=1e-4, num_epochs=10,
          lista_pretrain_epochs=5, dictionary_steps=100)),
    ('clustering_paper', clustering.ClusteringConfig, 'coil20',
     dict(code_dims=(128, 256, 512), lam=1.0, learning_rate=1e-4,
          num_epochs=100, lista_pretrain_epochs=100, dictionary_steps=1_000)),
])
def test_config_files_hold_the_presets(name, cls, dataset, expected):
  config = _config_file(name)
  assert sorted(config) == sorted(
      classification.DATASETS[1:] if cls is classification.ClassificationConfig
      else clustering.DATASETS[1:])
  settings = task_configs.dataset_settings(cls, config, dataset, 'file')
  assert settings == cls(dataset=dataset, data_path='file', **expected)


def test_datasets_config_fields_and_errors():
  config = task_configs.datasets_config(
      classification.ClassificationConfig, {'mnist': dict(lam=2.0)},
      num_epochs=3)
  assert config.mnist.lam == 2.0 and config.mnist.num_epochs == 3
  assert 'dataset' not in config.mnist and 'data_path' not in config.mnist
  # A field that defaults to None takes a value of its type.
  config.mnist.l0_lam = 0.5
  config.mnist.max_train = 100
  settings = task_configs.dataset_settings(
      classification.ClassificationConfig, config, 'mnist', None)
  assert (settings.l0_lam, settings.max_train, settings.lam) == (0.5, 100, 2.0)
  config.mnist.lam = -1.0
  with pytest.raises(ValueError, match='config.mnist: lam must be positive'):
    task_configs.dataset_settings(classification.ClassificationConfig,
                                  config, 'mnist', None)
  with pytest.raises(ValueError, match="no section 'pie'"):
    task_configs.dataset_settings(clustering.ClusteringConfig, config, 'pie',
                                  None)
  with pytest.raises(ValueError, match=r"field\(s\) \['dataset'\]"):
    task_configs.datasets_config(classification.ClassificationConfig,
                                 {'mnist': dict(dataset='mnist')})
  with pytest.raises(ValueError, match="'marginal_weight'"):
    task_configs.datasets_config(classification.ClassificationConfig,
                                 {'mnist': dict(marginal_weight=1.0)})
