"""Test-session setup: one JAX compilation cache per test process, and
XLA's cheap compilation.

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
The tests check what is computed, to tolerances, never how fast; the timing
benchmarks time with their own runs.
"""

import atexit
import os
import shutil
import tempfile

import jax

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
os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = str(
    _MIN_COMPILE_SECONDS)
jax.config.update('jax_compilation_cache_dir', _CACHE_DIR)
jax.config.update('jax_disable_most_optimizations', True)
jax.config.update('jax_persistent_cache_min_compile_time_secs',
                  _MIN_COMPILE_SECONDS)
