"""Every experiment script starts and explains its flags."""

import glob
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
SCRIPTS = sorted(os.path.basename(path) for path in
                 glob.glob(os.path.join(ROOT, 'experiments', '*.py')))


def test_there_are_scripts():
  assert 'approximation.py' in SCRIPTS


@pytest.mark.parametrize('script', SCRIPTS)
def test_help_describes_every_flag(script):
  completed = subprocess.run(
      [sys.executable, os.path.join(ROOT, 'experiments', script), '--help'],
      capture_output=True, text=True, timeout=300, cwd=ROOT,
      env=dict(os.environ, JAX_PLATFORMS='cpu'))
  # absl prints the usage and the script's own flags, then exits with 1.
  assert 'Traceback' not in completed.stderr, completed.stderr[-2000:]
  assert '--helpfull' in completed.stdout, completed.stdout[-2000:]
  with open(os.path.join(ROOT, 'experiments', script)) as handle:
    defines_flags = 'flags.DEFINE_' in handle.read()
  flag_lines = [line for line in completed.stdout.splitlines()
                if line.startswith('  --')]
  assert bool(flag_lines) == defines_flags, completed.stdout[-2000:]


def test_training_step_benchmark_runs_with_tiny_settings(tmp_path):
  completed = subprocess.run(
      [sys.executable,
       os.path.join(ROOT, 'experiments', 'training_step_benchmark.py'),
       '--signal_dim=6', '--code_dim=8', '--num_stages=2', '--batch_size=4',
       '--m=3', '--scan_steps=2', '--top_m_rows=16', '--top_m_dim=8',
       '--top_m_m=2', '--repeats=1', '--runs=2', f'--workdir={tmp_path}'],
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
