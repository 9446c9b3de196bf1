"""Every experiment script starts and explains its flags."""

import glob
import importlib.util
import json
import os
import re
import subprocess
import sys

from absl import flags
import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
SCRIPTS = sorted(os.path.basename(path) for path in
                 glob.glob(os.path.join(ROOT, 'experiments', '*.py')))


def test_there_are_scripts():
  assert 'approximation.py' in SCRIPTS


def _defines_flags(script):
  with open(os.path.join(ROOT, 'experiments', script)) as handle:
    return 'flags.DEFINE_' in handle.read()


def test_help_runs_and_lists_the_flags():
  # One script through the command line (the quick start's); the others'
  # flags are read in-process below, without a Python start-up each.
  script = 'approximation.py'
  completed = subprocess.run(
      [sys.executable, os.path.join(ROOT, 'experiments', script), '--help'],
      capture_output=True, text=True, timeout=300, cwd=ROOT,
      env=dict(os.environ, JAX_PLATFORMS='cpu'))
  # absl prints the usage and the script's own flags, then exits with 1.
  assert 'Traceback' not in completed.stderr, completed.stderr[-2000:]
  assert '--helpfull' in completed.stdout, completed.stdout[-2000:]
  flag_lines = [line for line in completed.stdout.splitlines()
                if line.startswith('  --')]
  assert flag_lines and _defines_flags(script), completed.stdout[-2000:]


@pytest.mark.parametrize('script', SCRIPTS)
def test_help_describes_every_flag(parse_flags, script):
  helps = parse_flags(script, [], parse_argv=False)
  assert bool(helps) == _defines_flags(script), helps
  for name, text in helps.items():
    assert text and text.strip(), f'{script}: --{name} has no help text'


# Every flag (and every path a script reads) is checked while parsing, before
# any computation; the error names the flag.

_BAD_FLAGS = [
    ('approximation.py', ['--p=0'], 'p'),
    ('approximation.py', ['--data_dir=/missing/dir'], 'data_dir'),
    ('calibrate_regime.py', ['--p=100'], 'p'),
    ('calibrate_regime.py', ['--data_dir=/missing/dir'], 'data_dir'),
    ('dictionary_conditioning.py', ['--data_dir=/missing/dir'], 'data_dir'),
    ('iht_start.py', ['--p=100'], 'p'),
    ('iht_start.py', ['--problems=l2'], 'problems'),
    ('iht_start.py', ['--workdir=/missing/dir'], 'workdir'),
    ('solvers_benchmark.py', ['--config.m=0'], 'config.m'),
    ('solvers_benchmark.py', ['--config.m=300'], 'config.m'),
    ('solvers_benchmark.py', ['--config.repeats=0'], 'config.repeats'),
    ('solvers_benchmark.py', ['--config.lam=-1'], 'config.lam'),
    ('solvers_benchmark.py', ['--config.nonzero_prob=0'],
     'config.nonzero_prob'),
    ('clustering.py', ['--data_dir={data}', '--pie_path=/missing.npz'],
     'pie_path'),
    ('clustering.py', ['--dataset=coil20', '--coil20_path=/missing.npz'],
     'coil20_path'),
    ('clustering.py', ['--dataset=coil20'], 'coil20_path'),
    ('clustering.py', ['--data_dir={data}', '--config.coil20.lam=0'],
     r'config=(?s:.*): config\.coil20: lam must be positive'),
    ('clustering.py', ['--data_dir={data}', '--config.pie.kmeans_restarts=0'],
     r'config=(?s:.*): config\.pie: kmeans_restarts'),
    ('clustering.py', ['--data_dir={data}', '--config.coil20.num_epochs=x'],
     r'config\.coil20\.num_epochs'),
    ('classification.py', ['--dataset=indian_pines'], 'indian_pines_path'),
    ('classification.py', ['--data_dir={data}',
                           '--indian_pines_path=/missing.npz'],
     'indian_pines_path'),
    ('classification.py', ['--dataset=mnist', '--data_dir=/missing/dir'],
     'data_dir'),
    ('classification.py',
     ['--dataset=mnist', '--config.indian_pines.spatial_window=2'],
     r'config=(?s:.*): config\.indian_pines: spatial_window'),
    ('classification.py',
     ['--dataset=mnist', '--config.mnist.whitening_epsilon=-1'],
     r'config=(?s:.*): config\.mnist: whitening_epsilon must be positive'),
    ('classification.py', ['--dataset=mnist', '--config.mnist.augment=True',
                           '--config.mnist.mnist_image_size=14'],
     r'config=(?s:.*): config\.mnist: augment distorts 28 x 28 digits'),
    ('classification.py', ['--dataset=mnist', '--config.mnist.max_train=x'],
     r'config\.mnist\.max_train'),
    ('ddse.py', ['--num_shards=4', '--shard_index=4'], 'shard_index'),
    ('ddse.py', ['--data_dir=/missing/dir'], 'data_dir'),
    ('ddse.py', ['--config.momentum=1.5'], 'config.momentum'),
    ('ddse.py', ['--config.batch_size=0'], 'config.batch_size'),
    ('ddse.py', ['--config.sweep_values.train_fraction=(0.5,2.0)'],
     'config.train_fraction'),
    ('ddse.py', ['--config.methods=(\'ddse\',\'resnet\')'],
     'config.methods'),
    ('ddse.py', ['--config.sweeps=(\'batch_size\',)'], 'config.sweeps'),
    ('encoding_benchmark.py', ['--workdir=/missing/dir'], 'workdir'),
    ('summary.py', ['--results_dir=/missing/dir'], 'results_dir'),
    ('training_step_benchmark.py', ['--config.batch_size=0'],
     'config.batch_size'),
    ('training_step_benchmark.py', ['--config.m=600'], 'config.m'),
    ('training_step_benchmark.py', ['--config.runs=0'], 'config.runs'),
    ('unrolled_benchmark.py', ['--config.num_stages=0'], 'config.num_stages'),
    ('unrolled_benchmark.py', ['--methods=lista,nope'], 'methods'),
    ('unrolled_benchmark.py', ['--settings=noiseless,loud'], 'settings'),
    ('unrolled_benchmark.py', ['--config.refine_decays=(0.2, -1)'],
     'config.refine_decays'),
    ('unrolled_benchmark.py', ['--config.refine_decays=(0.2, "x")'],
     'config.refine_decays'),
    ('unrolled_benchmark.py', ['--config.nonzero_prob=0'],
     'config.nonzero_prob'),
    ('unrolled_benchmark.py', ['--config.learning_rate=nan'],
     'config.learning_rate'),
    ('unrolled_benchmark.py', ['--config.training=both'], 'config.training'),
]


# A config file's fields are checked while parsing too, by the settings
# dataclass the script builds from them: the error is the --config flag's and
# names the field.
_BAD_CONFIG_FIELDS = [
    ('approximation.py', ['--config.num_epochs=-1'], 'num_epochs'),
    ('approximation.py', ['--config.batch_size=0'], 'batch_size'),
    ('approximation.py', ['--config.min_sigma=2'], 'min_sigma'),
    ('approximation.py', ['--config.seed=-1'], 'seed'),
    ('approximation.py', ['--config.lam=-1'], 'lam'),
    ('approximation.py', ['--config.m=200'], 'm'),
    ('approximation.py', ['--config.adam_learning_rates=(1e-3, -1)'],
     'adam_learning_rates'),
    ('approximation.py', ['--config.sgd_learning_rates=(0.0,)'],
     'sgd_learning_rates'),
    ('approximation.py', ['--config.problems=("l1",)'], 'problems'),
    ('approximation.py', ['--config.calibration=/missing.json'],
     'calibration'),
    ('approximation.py', ['--config.previous_results=/missing.json'],
     'previous_results'),
    ('approximation.py', ['--config=experiments/configs/approximation_paper.py',
                          '--p=64'], 'p = 64'),
    ('calibrate_regime.py', ['--config.whitening_epsilons=(0.0,)'],
     'whitening_epsilons'),
    ('calibrate_regime.py', ['--config.dictionary_lams=(-1.0,)'],
     'dictionary_lams'),
    ('calibrate_regime.py', ['--config.num_signals=0'], 'num_signals'),
    ('calibrate_regime.py', ['--config.lam=-1'], 'lam'),
    ('calibrate_regime.py', ['--config.literal_results=/missing.json'],
     'literal_results'),
    ('dictionary_conditioning.py', ['--config.num_train=-5'], 'num_train'),
    ('dictionary_conditioning.py', ['--config.lam=-1'], 'lam'),
    ('dictionary_conditioning.py', ['--config.code_dim=0'], 'code_dim'),
]


@pytest.fixture(name='parse_flags')
def fixture_parse_flags(monkeypatch):
  """Imports a script's flag definitions in-process and parses argv.

  `parse(script, argv, parse_argv=True)` returns the help text of each flag
  the script defines, by name (with `parse_argv=False`, after the import
  alone, as for `--help`).

  The script's flags are removed again afterwards, so that the next script
  can define its own (several share names). `L0ENC_DATA_DIR` is unset: the
  defaults are what a user without it gets.
  """
  monkeypatch.delenv('L0ENC_DATA_DIR', raising=False)
  known = set(flags.FLAGS)

  def defined_by_absl(name):
    return flags.FLAGS.find_module_defining_flag(name, '').startswith('absl')

  def parse(script, argv, parse_argv=True):
    path = os.path.join(ROOT, 'experiments', script)
    spec = importlib.util.spec_from_file_location(
        f'_flags_of_{script[:-3]}', path)
    # Flags another test module's import of a script defined (e.g. the
    # summary's) would clash with the script's own: set aside meanwhile.
    aside = {name: flags.FLAGS[name] for name in known
             if not defined_by_absl(name)}
    for name in aside:
      delattr(flags.FLAGS, name)
    kept = known - set(aside)
    try:
      # config_flags defines the --config.<field> overrides it finds in
      # sys.argv when the script defines --config.
      monkeypatch.setattr(sys, 'argv', [script] + argv)
      spec.loader.exec_module(importlib.util.module_from_spec(spec))
      if parse_argv:
        flags.FLAGS([script] + argv)
      # The help text of each flag the script's import defined (its own and
      # the --config its configs helper defines for it), absl's left out.
      return {name: flags.FLAGS[name].help
              for name in set(flags.FLAGS) - kept
              if not defined_by_absl(name)}
    finally:
      flags.FLAGS.unparse_flags()
      for name in set(flags.FLAGS) - kept:
        delattr(flags.FLAGS, name)
      for name, flag in aside.items():
        flags.FLAGS[name] = flag

  yield parse
  flags.FLAGS.unparse_flags()


@pytest.mark.parametrize('script, argv, flag', _BAD_FLAGS)
def test_bad_flags_fail_while_parsing_naming_the_flag(parse_flags, script,
                                                      argv, flag, tmp_path):
  # {data}: a directory where every data file exists, so that only the flag
  # under test is wrong.
  for name in ('coil20.npz', 'indian_pines.npz'):
    (tmp_path / name).write_bytes(b'')
  argv = [arg.replace('{data}', str(tmp_path)) for arg in argv]
  with pytest.raises(flags.IllegalFlagValueError, match=f'--{flag}'):
    parse_flags(script, argv)


@pytest.mark.parametrize('script, argv, field', _BAD_CONFIG_FIELDS)
def test_bad_config_fields_fail_while_parsing_naming_the_field(
    parse_flags, script, argv, field):
  with pytest.raises(flags.IllegalFlagValueError,
                     match=f'--config=(?s:.*): .*{re.escape(field)}'):
    parse_flags(script, argv)


def test_default_configs_parse(parse_flags):
  for script in ('approximation.py', 'calibrate_regime.py',
                 'dictionary_conditioning.py'):
    parse_flags(script, [])


def test_every_script_with_flags_has_bad_flag_cases():
  with_flags = [script for script in SCRIPTS if 'flags.DEFINE_' in open(
      os.path.join(ROOT, 'experiments', script)).read()]
  assert sorted({script for script, _, _ in _BAD_FLAGS}) == with_flags


CONFIGS = sorted(glob.glob(os.path.join(ROOT, 'experiments', 'configs',
                                       '*_*.py')))


@pytest.mark.parametrize('path', CONFIGS, ids=os.path.basename)
def test_every_config_file_parses_into_its_settings(parse_flags, path,
                                                    tmp_path):
  # experiments/configs/<script>_<preset>.py configures experiments/<script>.
  name = os.path.basename(path)[:-3]
  script = next(script for script in SCRIPTS
                if name.startswith(script[:-3] + '_'))
  # The task scripts check their data files while parsing too.
  for data_file in ('coil20.npz', 'indian_pines.npz'):
    (tmp_path / data_file).write_bytes(b'')
  data_dir = ([f'--data_dir={tmp_path}']
              if script in ('classification.py', 'clustering.py') else [])
  parse_flags(script, [f'--config={path}'] + data_dir)


def test_good_paths_pass_and_the_data_dir_defaults_to_the_environment(
    parse_flags, tmp_path, monkeypatch):
  (tmp_path / 'coil20.npz').write_bytes(b'')
  (tmp_path / 'indian_pines.npz').write_bytes(b'')
  parse_flags('clustering.py', [f'--data_dir={tmp_path}'])
  parse_flags('classification.py', [f'--data_dir={tmp_path}'])
  monkeypatch.setenv('L0ENC_DATA_DIR', str(tmp_path))
  parse_flags('clustering.py', [])  # Found through $L0ENC_DATA_DIR.
  parse_flags('classification.py', ['--report_only'])


def test_no_default_points_outside_the_repository():
  for script in SCRIPTS:
    with open(os.path.join(ROOT, 'experiments', script)) as handle:
      assert "'../" not in handle.read(), script


def test_training_step_benchmark_runs_with_tiny_settings(tmp_path):
  completed = subprocess.run(
      [sys.executable,
       os.path.join(ROOT, 'experiments', 'training_step_benchmark.py'),
       '--config.signal_dim=6', '--config.code_dim=8',
       '--config.num_stages=2', '--config.batch_size=4', '--config.m=3',
       '--config.scan_steps=2', '--config.top_m_rows=16',
       '--config.top_m_dim=8', '--config.top_m_m=2', '--config.repeats=1',
       '--config.runs=2', f'--workdir={tmp_path}'],
      capture_output=True, text=True, timeout=600, cwd=ROOT,
      env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert completed.returncode == 0, completed.stderr[-3000:]
  with open(os.path.join(tmp_path, 'results.json')) as handle:
    results = json.load(handle)
  assert len(results['runs']) == 2
  assert set(results['summary']['encoders']) == {
      'LISTA', 'DeepL0Encoder', 'DeepMSparseEncoder', 'MLPEncoder'}
  for ratios in list(results['summary']['encoders'].values()) + [
      results['summary']['top_m']]:
    for spread in ratios.values():
      assert 0 < spread['min'] <= spread['median'] <= spread['max']
  with open(os.path.join(tmp_path, 'results.md')) as handle:
    table = handle.read()
  assert '| DeepMSparseEncoder |' in table and 'ops.top_m' in table
