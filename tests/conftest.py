"""Test-session setup: one JAX compilation cache per test process, XLA's
cheap compilation, and how pytest-xdist hands the test files to workers.

Many tests compile the same computation more than once: a retried or
resumed training run rebuilds its batch function and train step, every unit
of an experiment builds its own, and the scripts the tests run in
subprocesses compile what the test process already compiled. JAX's
persistent compilation cache, in a fresh temporary directory that this
process (and the subprocesses it starts, through the environment) shares
and that is deleted at exit, turns each repeat into a lookup of the
executable already built from the same XLA program. What is computed does
not change: the cache key is the program itself (with the compiler options
and devices), and nothing is kept between test sessions, so the suite costs
on a fresh machine what it costs here.

The tests' arrays are tiny, so compiling takes most of a test's time: XLA's
optimization passes (`jax_disable_most_optimizations`) cost more than the
slower programs they would speed up (a third of the DDSE experiment's test).
The same holds for XLA:CPU's fusion emitters (`--xla_cpu_use_fusion_emitters`,
off here: the older elemental emitters compile a small program in about two
thirds of the time; the models and tasks tests from 2:43 to 1:44).
The tests check what is computed, to tolerances, never how fast; the timing
benchmarks time with their own runs.
"""

import atexit
import os
import shutil
import tempfile

import jax
import pytest

# pytest-xdist workers are processes of their own: each makes its own
# directory, so no two processes write one cache at the same time.
_CACHE_DIR = tempfile.mkdtemp(prefix='l0enc_test_jax_cache_')
atexit.register(shutil.rmtree, _CACHE_DIR, ignore_errors=True)
# Compilations under this many seconds are cheaper to redo than to store.
_MIN_COMPILE_SECONDS = 0.2

# Subprocesses (the scripts and notebooks the tests run) read the
# environment; this process has imported jax already, so set its config too.
os.environ['JAX_COMPILATION_CACHE_DIR'] = _CACHE_DIR
os.environ['JAX_DISABLE_MOST_OPTIMIZATIONS'] = '1'
# Read when the backend starts (the first computation, after this file).
os.environ['XLA_FLAGS'] = ' '.join(filter(None, [
    os.environ.get('XLA_FLAGS'), '--xla_cpu_use_fusion_emitters=false']))
os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = str(
    _MIN_COMPILE_SECONDS)
jax.config.update('jax_compilation_cache_dir', _CACHE_DIR)
jax.config.update('jax_disable_most_optimizations', True)
jax.config.update('jax_persistent_cache_min_compile_time_secs',
                  _MIN_COMPILE_SECONDS)

# The test files whose tests share the tiny task runs of `task_runs` (each
# computed once per worker process) go to one worker together, so that it
# computes them once; every other file is a unit of its own, as under
# `--dist loadfile` (its module fixtures are then computed once).
_TASK_RUN_FILES = frozenset({'classification_test.py', 'clustering_test.py',
                             'task_reports_test.py', 'tasks_common_test.py'})


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
  """pytest-xdist's file scheduling, with the task-run files as one unit."""
  # Imported here: the hook is only called when pytest-xdist runs workers.
  from xdist.scheduler import LoadScopeScheduling  # pylint: disable=g-import-not-at-top

  class FileScheduling(LoadScopeScheduling):

    def _split_scope(self, nodeid):
      path = nodeid.split('::', 1)[0]
      return 'task_runs' if os.path.basename(path) in _TASK_RUN_FILES else path

  return FileScheduling(config, log)
