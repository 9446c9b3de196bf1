"""ml_collections configs to the experiments' settings, checked in one place.

Every experiment reads its settings from a `get_config()` file,
`experiments/configs/<experiment>_<preset>.py`, through ml_collections'
`config_flags` (so any field can be overridden as `--config.field=value`),
and turns the `ConfigDict` into its frozen settings dataclass with
`to_settings`. The dataclass's `__post_init__` is where the values are
checked, so a bad override fails before any computation, naming the field.
"""

import dataclasses
import os
import re
from typing import Any, Callable, Mapping, TypeVar

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


def define_config_flag(default: str,
                       build: type | Callable[[ml_collections.ConfigDict],
                                              Any], *,
                       help_string: str, flag_values: Any = None) -> Any:
  """Defines `--config`, a `get_config()` file, checked while parsing.

  The flag is ml_collections' `config_flags.DEFINE_config_file` (locked: an
  override of a field the file does not have is an error), with a validator
  that builds the settings from the config, so that a bad file or
  `--config.field=value` fails while the flags are parsed, before any
  computation, with the settings' own message naming the field
  (`--config.lam: lam must be positive and finite, got -1.0`). Every
  experiment's main defines its config flag through this function.

  Args:
    default: path of the default config file (absolute, so that the script
      runs from any directory).
    build: the settings dataclass the config's fields belong to, or a
      function from the config to the settings (for mains whose settings
      also depend on other flags or on sections of the config); it raises
      `ValueError` (or `TypeError`) for a bad config.
    help_string: the flag's `--help` text.
    flag_values: the `FlagValues`; absl's global `FLAGS` by default.

  Returns:
    The flag holder; build the settings in `main` from `holder.value`.
  """
  # pylint: disable=g-import-not-at-top
  from absl import flags
  from ml_collections import config_flags
  # pylint: enable=g-import-not-at-top
  flag_values = flags.FLAGS if flag_values is None else flag_values
  holder = config_flags.DEFINE_config_file(
      'config', default=default, help_string=help_string,
      flag_values=flag_values, lock_config=True)
  settings_cls = build if isinstance(build, type) else None
  make = ((lambda config: to_settings(settings_cls, config)) if settings_cls
          else build)

  def check(config: ml_collections.ConfigDict) -> bool:
    try:
      make(config)
    except (TypeError, ValueError) as error:
      message = str(error)
      if settings_cls is not None:
        message = _naming_the_field(settings_cls, message)
      raise flags.ValidationError(message) from error
    return True

  flags.register_validator('config', check, flag_values=flag_values)
  return holder


def default_workdir(holder: Any) -> str:
  """`workdir/<the config file's name>`, e.g. workdir/clustering_quick.

  Args:
    holder: the flag holder `define_config_flag` returned (parsed).
  """
  # pylint: disable-next=g-import-not-at-top
  from ml_collections import config_flags
  name = config_flags.get_config_filename(holder)
  return os.path.join('workdir', os.path.splitext(os.path.basename(name))[0])


def _naming_the_field(settings_cls: type, message: str) -> str:
  """`--config.<field>: message` for the field the message names first."""
  positions = {}
  for field in dataclasses.fields(settings_cls):
    found = re.search(rf'\b{re.escape(field.name)}\b', message)
    if found:
      positions[field.name] = found.start()
  if not positions:
    return message
  return f'--config.{min(positions, key=positions.get)}: {message}'
