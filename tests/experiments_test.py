"""Every experiment script starts and explains its flags."""

import glob
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
