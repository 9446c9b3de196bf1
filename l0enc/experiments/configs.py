"""ml_collections configs to the experiments' settings, checked in one place.

Every experiment reads its settings from a `get_config()` file,
`experiments/configs/<experiment>_<preset>.py`, through ml_collections'
`config_flags` (so any field can be overridden as `--config.field=value`),
and turns the `ConfigDict` into its frozen settings dataclass with
`to_settings`. The dataclass's `__post_init__` is where the values are
checked, so a bad override fails before any computation, naming the field.
"""

import dataclasses
from typing import Any, Mapping, TypeVar

import ml_collections

Settings = TypeVar('Settings')


def to_settings(cls: type[Settings],
                config: ml_collections.ConfigDict | Mapping[str, Any],
                **overrides: Any) -> Settings:
  """Builds the settings dataclass `cls` from a config.

  Lists become tuples (the dataclasses are frozen and hashable); fields the
  config leaves out keep the dataclass's defaults.

  Args:
    cls: a dataclass whose `__post_init__` checks its values.
    config: the experiment's config (or a plain mapping).
    **overrides: fields set after the config's (e.g. derived by the main).

  Returns:
    `cls(**fields)`.

  Raises:
    ValueError: the config has a field `cls` does not know, naming it.
  """
  values = (config.to_dict() if isinstance(config, ml_collections.ConfigDict)
            else dict(config))
  values.update(overrides)
  known = {field.name for field in dataclasses.fields(cls)}
  unknown = sorted(set(values) - known)
  if unknown:
    raise ValueError(f'config has field(s) {unknown} that {cls.__name__} '
                     f'does not know; known: {sorted(known)}.')
  as_tuple = lambda value: (tuple(as_tuple(v) for v in value)
                            if isinstance(value, list) else value)
  return cls(**{name: as_tuple(value) for name, value in values.items()})
