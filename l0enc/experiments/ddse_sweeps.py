"""The units of the DDSE experiment: the default setting and the sweeps.

The DDSE paper's Sec. 4.2 sweeps each of s/n (Fig. 3), m (Fig. 4), the
training fraction ts/t (Fig. 5) and k (Fig. 6) with the others at their
defaults. `plan` lists the units of a set of sweeps (a unit shared by
several sweeps, such as the default setting, is trained once) and
`run_experiment` runs them all (or one shard of them) and gathers their
results. `Settings` is the whole experiment as the config files
`experiments/configs/ddse_<preset>.py` give it (they start from
`default_config()`, the paper's setting).
"""

import dataclasses
import os
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from absl import logging
import ml_collections

from l0enc import ddse
from l0enc.experiments import ddse as ddse_unit
from l0enc.experiments import ddse_compactness
from l0enc.experiments import ddse_training
from l0enc.experiments import paper


class Sweep(NamedTuple):
  """One of the paper's controlled experiments.

  Attributes:
    field: the `Config` field it varies.
    label: the variable's name in the paper.
    figure: the paper's figure.
  """
  field: str
  label: str
  figure: str


SWEEPS = {
    'sparsity_ratio': Sweep('sparsity_ratio', 's/n', 'Fig. 3'),
    'code_dim': Sweep('code_dim', 'm', 'Fig. 4'),
    'train_fraction': Sweep('train_fraction', 'ts/t', 'Fig. 5'),
    'num_stages': Sweep('num_stages', 'k', 'Fig. 6'),
}
_INT_FIELDS = ('code_dim', 'num_stages')


def unit_name(config: ddse_unit.Config) -> str:
  """A directory name that identifies the unit's setting and method."""
  parts = [config.method]
  if config.is_sparse:
    parts.append(f's{config.sparsity_ratio:g}')
  parts += [f'm{config.code_dim}', f'k{config.num_stages}',
            f't{config.train_fraction:g}']
  return '_'.join(parts)


class Plan(NamedTuple):
  """The units of an experiment and where each sweep point finds its own.

  Attributes:
    units: `{unit name: ddse_unit.Config}`, each unit once.
    default: `{method: unit name}` at the base setting.
    sweeps: `{sweep name: {'values': [...], 'units': {method: [unit name
      per value]}}}`.
  """
  units: dict[str, ddse_unit.Config]
  default: dict[str, str]
  sweeps: dict[str, dict[str, Any]]


def plan(base: ddse_unit.Config, sweeps: Mapping[str, Sequence[float]],
         methods: Sequence[str] = ddse.MODEL_KINDS) -> Plan:
  """Lists the units of the default setting and the sweeps.

  A sweep point changes one field of `base` (and `method`). Baselines I-IV
  ignore s, so their s/n points are the default unit. Units that coincide
  (every sweep passes through the default setting) are listed once.

  Args:
    base: the default setting (its `method` is ignored).
    sweeps: `{sweep name from SWEEPS: values}`.
    methods: the methods, from `ddse.MODEL_KINDS`.

  Returns:
    The `Plan`. Every unit's `Config` is validated here, before anything
    runs.
  """
  unknown = [method for method in methods if method not in ddse.MODEL_KINDS]
  if unknown or not methods:
    raise ValueError(f'methods must be a non-empty selection of '
                     f'{ddse.MODEL_KINDS}, got {list(methods)}.')
  unknown = [name for name in sweeps if name not in SWEEPS]
  if unknown:
    raise ValueError(f'Unknown sweep(s) {unknown}; the sweeps are '
                     f'{tuple(SWEEPS)}.')
  units = {}

  def add(config):
    if config.method not in ddse_unit.SPARSE_METHODS:
      config = dataclasses.replace(config,
                                   sparsity_ratio=base.sparsity_ratio)
    name = unit_name(config)
    if units.setdefault(name, config) != config:
      raise ValueError(f'Two settings share the unit name {name}.')
    return name

  default = {method: add(dataclasses.replace(base, method=method))
             for method in methods}
  planned = {}
  for sweep_name, values in sweeps.items():
    field = SWEEPS[sweep_name].field
    if not values:
      raise ValueError(f'The sweep {sweep_name} has no values.')
    values = [int(v) if field in _INT_FIELDS else float(v) for v in values]
    planned[sweep_name] = {
        'values': values,
        'units': {method: [add(dataclasses.replace(base, method=method,
                                                   **{field: value}))
                           for value in values]
                  for method in methods}}
  return Plan(units, default, planned)


@dataclasses.dataclass(frozen=True)
class Settings(ddse_unit.Config):
  """The whole experiment: the default setting, the methods and the sweeps.

  What `experiments/configs/ddse_<preset>.py` configure: every `Config`
  field but `method` sets the default setting (`base`), and these more:

  Attributes:
    methods: the methods, from `l0enc.ddse.MODEL_KINDS`.
    sweeps: the sweeps that run, from `SWEEPS`; () for the default setting
      only.
    sweep_values: `{sweep: values}` of every sweep of `SWEEPS` (those not in
      `sweeps` are not run).
    compactness: measure the size and speed of the default DDSE.
    augment: False trains on the plain images (every augmentation strength
      taken as 0).
    preset: the config's name, for the report and the default workdir.
    note: a remark on the budget, printed under every table and figure.
  """
  methods: tuple[str, ...] = ddse.MODEL_KINDS
  sweeps: tuple[str, ...] = tuple(SWEEPS)
  sweep_values: Mapping[str, tuple[float, ...]] = dataclasses.field(
      default_factory=lambda: dict(paper.DDSE_SWEEP_VALUES))
  compactness: bool = True
  augment: bool = True
  preset: str = 'paper'
  note: str = ''

  def __post_init__(self):
    super().__post_init__()
    # The values as tuples: a config gives lists.
    object.__setattr__(self, 'sweep_values', {
        name: tuple(values) for name, values in self.sweep_values.items()})
    unknown = sorted(set(self.sweep_values) - set(SWEEPS))
    if unknown or set(self.sweeps) - set(self.sweep_values):
      raise ValueError(f'sweeps and sweep_values must name sweeps of '
                       f'{tuple(SWEEPS)} (with values for each sweep that '
                       f'runs), got sweeps={self.sweeps}, sweep_values for '
                       f'{tuple(self.sweep_values)}.')
    # Every unit's config is checked here, before anything trains.
    plan(self.base, self.sweeps_to_run, self.methods)

  @property
  def base(self) -> ddse_unit.Config:
    """The default setting."""
    fields = {field.name: getattr(self, field.name)
              for field in dataclasses.fields(ddse_unit.Config)}
    if not self.augment:
      fields.update(max_rotation_degrees=0.0, max_scale_change=0.0,
                    max_blur_sigma=0.0, noise_stddev=0.0)
    return ddse_unit.Config(**fields)

  @property
  def sweeps_to_run(self) -> dict[str, tuple[float, ...]]:
    """`{sweep: values}` of the sweeps that run, as `plan` takes them."""
    return {name: self.sweep_values[name] for name in self.sweeps}


def default_config() -> ml_collections.ConfigDict:
  """Every `Settings` field at its default, the base of each config file.

  Left out: `method` (a unit's, not the experiment's) and `data_dir`
  (where the data is, an ordinary flag). A `None` default is a typed
  placeholder, so that `--config.learning_rate=0.05` parses.

  Returns:
    The `ConfigDict` (the paper's setting, `Settings()`).
  """
  types = typing.get_type_hints(Settings)
  config = ml_collections.ConfigDict()
  # Built once: each Settings plans (and checks) the paper's 120 units.
  defaults = Settings()
  for field in dataclasses.fields(Settings):
    if field.name in ('method', 'data_dir'):
      continue
    value = getattr(defaults, field.name)
    if value is None:
      value = ml_collections.config_dict.placeholder(
          next(kind for kind in typing.get_args(types[field.name])
               if kind is not type(None)))
    config[field.name] = dict(value) if isinstance(value, Mapping) else value
  return config


def run_experiment(base: ddse_unit.Config,
                   sweeps: Mapping[str, Sequence[float]], workdir: str,
                   methods: Sequence[str] = ddse.MODEL_KINDS,
                   *, measure_compactness: bool = True,
                   timing_repeats: int = 3,
                   on_unit: Callable[[str, dict[str, Any]], None] | None
                   = None,
                   shard_index: int = 0,
                   num_shards: int = 1,
                   report_only: bool = False) -> dict[str, Any]:
  """Runs every unit of `plan(base, sweeps, methods)` and gathers them.

  Units live in `workdir/units/<unit name>/`; finished ones are read back,
  interrupted ones resume. With `num_shards` > 1 only every
  `num_shards`-th unit (from `shard_index`) runs, so that several processes
  or machines share one workdir without touching the same unit; a last run
  without shards then reads them all back and gathers them.

  Args:
    base: the default setting.
    sweeps: `{sweep name: values}`; empty for the default setting only.
    workdir: the experiment directory.
    methods: the methods.
    measure_compactness: measure the size and speed of the default DDSE
      (`unit_compactness`; it needs DDSE among the methods).
    timing_repeats: timed calls per inference-time measurement.
    on_unit: called with (unit name, results) after each unit.
    shard_index: which shard of the units to run, in [0, num_shards).
    num_shards: how many shards the units are dealt into (round robin in
      plan order).
    report_only: train nothing: gather the finished units only (and the
      compactness if it was measured); the data is not loaded.

  Returns:
    A JSON-able dict: the base config, the plan (unit names), the results of
    every unit run or read back (all of them unless sharded or
    `report_only`), the compactness of the
    default DDSE (if DDSE is among the methods and this shard ran it) and
    the devices the units ran on.
  """
  if num_shards < 1 or not 0 <= shard_index < num_shards:
    raise ValueError(f'Need 0 <= shard_index < num_shards, got shard '
                     f'{shard_index} of {num_shards}.')
  experiment = plan(base, sweeps, methods)
  split = None if report_only else ddse_unit.load_images(base)
  results = {}
  for number, (name, config) in enumerate(experiment.units.items(), 1):
    if (number - 1) % num_shards != shard_index:
      continue
    logging.info('Unit %d/%d: %s', number, len(experiment.units), name)
    unit = ddse_training.run(config, os.path.join(workdir, 'units', name),
                             split=split, report_only=report_only)
    if unit is None:
      continue
    results[name] = unit
    if on_unit is not None:
      on_unit(name, unit)
  default_ddse = experiment.default.get(ddse.DDSE_MODEL)
  measured = None
  if default_ddse in results and measure_compactness:
    measured = ddse_compactness.unit_compactness(
        experiment.units[default_ddse],
        os.path.join(workdir, 'units', default_ddse), split=split,
        timing_repeats=timing_repeats, report_only=report_only)
  return {
      'base_config': ddse_unit.config_json(base),
      'methods': list(methods),
      'default': experiment.default,
      'sweeps': experiment.sweeps,
      'units': results,
      'compactness': measured,
      # Where the numbers come from: units of one experiment may have run
      # on several machines (shards), or been read back on another.
      'device': ', '.join(sorted({unit['device']
                                  for unit in results.values()})),
  }

