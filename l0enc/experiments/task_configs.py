"""The config files of the classification and clustering experiments.

`experiments/configs/{classification,clustering}_<preset>.py` each return a
`datasets_config`: one section per data set, holding every field of the
experiment's settings dataclass (`ClassificationConfig`,
`ClusteringConfig`) but the ones the main derives from its flags
(`DERIVED_FIELDS`). The mains build one data set's settings with
`dataset_settings`, and `register_config_check` makes a bad
`--config.<dataset>.<field>=...` fail while the flags are parsed.
"""

import dataclasses
import typing
from typing import Any, Callable, Sequence

import ml_collections

from l0enc.experiments import configs
from l0enc.experiments import tasks_common

# Set per data set by the main (the section's name, the file its flags name).
DERIVED_FIELDS = ('dataset', 'data_path')

# The sections of the paper presets (experiments/configs/*_paper.py), which
# the whitened presets (*_whitened.py) start from.
CLASSIFICATION_PAPER_SECTIONS = {
    'mnist': dict(lam=1.0, num_epochs=50, lista_pretrain_epochs=20,
                  dictionary_steps=2_000),
    'indian_pines': dict(lam=3.0, head_weight_decay=1e-3, num_epochs=300,
                         lista_pretrain_epochs=50, dictionary_steps=1_000),
}
CLUSTERING_PAPER_SECTIONS = {
    'coil20': dict(num_epochs=100, lista_pretrain_epochs=100,
                   dictionary_steps=1_000),
    'pie': dict(num_epochs=50, lista_pretrain_epochs=30,
                dictionary_steps=2_000),
}
# What every section of the clustering paper preset shares (but p).
CLUSTERING_PAPER_SHARED = dict(lam=1.0, learning_rate=1e-4)


def _placeholder_type(annotation: Any) -> type:
  """`float` of `float | None`: the type an override of None parses as."""
  types = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
  if len(types) != 1:
    raise TypeError(f'no single type in {annotation!r}.')
  return types[0]


def datasets_config(cls: type[tasks_common.TaskConfig],
                    sections: dict[str, dict[str, Any]],
                    **shared: Any) -> ml_collections.ConfigDict:
  """A config of one section per data set, each every field of `cls`.

  A section holds all of `cls`'s fields except `DERIVED_FIELDS`, at the
  dataclass's defaults changed by `shared` and then by the section's own
  values, so that any of them can be overridden as
  `--config.<dataset>.<field>=value` (a field that defaults to None takes
  a value of its annotated type).

  Args:
    cls: `ClassificationConfig` or `ClusteringConfig`.
    sections: per data set the fields that differ from the defaults.
    **shared: fields that differ from the defaults in every section.

  Returns:
    The `ConfigDict` `{dataset: {field: value}}`.

  Raises:
    ValueError: a section or `shared` names a field `cls` does not have (or
      a derived one).
  """
  fields = {field.name: field for field in dataclasses.fields(cls)
            if field.name not in DERIVED_FIELDS}
  config = ml_collections.ConfigDict()
  for dataset, changes in sections.items():
    values = {**shared, **changes}
    unknown = sorted(set(values) - set(fields))
    if unknown:
      raise ValueError(f'section {dataset!r} has field(s) {unknown} that '
                       f'{cls.__name__} does not set from a config; known: '
                       f'{sorted(fields)}.')
    section = {}
    for name, field in fields.items():
      value = values.get(name, field.default)
      section[name] = (ml_collections.config_dict.placeholder(
          _placeholder_type(field.type)) if value is None else value)
    config[dataset] = ml_collections.ConfigDict(section)
  return config


def dataset_settings(cls: type[tasks_common.TaskConfig],
                     config: ml_collections.ConfigDict, dataset: str,
                     data_path: str | None) -> tasks_common.TaskConfig:
  """The settings of one data set from its section of `config`.

  Args:
    cls: `ClassificationConfig` or `ClusteringConfig`.
    config: a `datasets_config`.
    dataset: the section.
    data_path: the data set's file (from the main's flags).

  Returns:
    `cls(dataset=dataset, data_path=data_path, **config[dataset])`.

  Raises:
    ValueError: no such section, or a bad value; the message starts with
      `config.<dataset>` and names the field.
  """
  if dataset not in config:
    raise ValueError(f'config has no section {dataset!r}; it has '
                     f'{sorted(config)}.')
  try:
    return configs.to_settings(cls, config[dataset], dataset=dataset,
                               data_path=data_path)
  except ValueError as error:
    raise ValueError(f'config.{dataset}: {error}') from None


def sections_builder(cls: type[tasks_common.TaskConfig],
                     datasets: Sequence[str]
                     ) -> Callable[[ml_collections.ConfigDict], list[Any]]:
  """A builder for `configs.define_config_flag`: every section builds `cls`.

  A bad `--config.<dataset>.<field>=...` then fails while the flags are
  parsed (naming `config.<dataset>` and the field), before any computation.
  The data files are checked by their own flags, so the sections are built
  with a stand-in `data_path`.

  Args:
    cls: `ClassificationConfig` or `ClusteringConfig`.
    datasets: the sections to check.

  Returns:
    `config -> [cls of each section]`.
  """
  return lambda config: [dataset_settings(cls, config, dataset, data_path='')
                         for dataset in datasets]
