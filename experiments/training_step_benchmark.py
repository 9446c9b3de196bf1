r"""Times one training step of each encoder against the matmuls it contains.

A training step of an unrolled encoder is a chain of matrix products (W x,
then S z in each later stage; twice as many again in the backward pass) with
cheap element-wise work in between: neurons, the loss, the optimizer. So the
fair yardstick of its speed is the time of those same products alone, on
arrays of the same shapes, measured in the same run: the reported number is
the ratio `step time / matmul time`, not seconds (this machine is shared, so
seconds move between runs; the ratio much less). Target: within 1.5x.

`ops.top_m` (max-M pooling and unpooling) is timed the same way, against one
product of its own size: a batch of `top_m_rows` signals times a square
`top_m_dim` matrix (target: at most 0.5x); the former implementation, by
`lax.top_k`, is timed next to it.

After a warm-up call each, the calls being compared are timed in turns,
`repeats` rounds of one call each (`reporting.time_call`,
`block_until_ready`), and each ratio is the median over the rounds of the
per-round ratio: calls made moments apart on this shared machine. The
whole measurement runs `runs` times; the results give the median and the
spread of each ratio over the runs.

    python experiments/training_step_benchmark.py           # the defaults
    python experiments/training_step_benchmark.py --config.runs=1 \
        --config.repeats=3 --config.num_stages=2 --config.batch_size=8 \
        --workdir=/tmp/bench

The settings (the names in backquotes above) are a `get_config()` file
(`--config`, by default
`experiments/configs/training_step_benchmark_default.py`); any field can be
overridden as `--config.<field>=<value>`.

Writes `results.json` and `results.md` to --workdir.
"""

import dataclasses
import logging as python_logging
import os
import platform
import statistics
from typing import Any, Callable

from absl import app
from absl import flags
from absl import logging
from flax import nnx
import jax
import jax.numpy as jnp
import optax

from l0enc import models
from l0enc import ops
from l0enc import reporting
from l0enc import train
from l0enc import validation
from l0enc.experiments import configs


@dataclasses.dataclass(frozen=True)
class Settings:
  """The sizes and the timing of the benchmark: the fields of `--config`.

  Attributes:
    signal_dim: signal dimension n of the encoders.
    code_dim: code dimension p of the encoders.
    num_stages: unrolled stages K of the encoders.
    batch_size: signals per training step.
    m: M of the Deep M-Sparse encoder, at most `code_dim`.
    scan_steps: steps per call of `train.train_steps` (one `lax.scan`),
      timed per step next to the single step.
    top_m_rows: rows of the top_m benchmark.
    top_m_dim: row length p of the top_m benchmark (and the size of its
      square matmul).
    top_m_m: M of the top_m benchmark, at most `top_m_dim`.
    repeats: rounds of timed calls after a warm-up call (the median
      per-round ratio is kept).
    runs: times the whole measurement is repeated; the results give the
      median, min and max ratio.
    seed: PRNG seed of the weights and the data.
  """
  signal_dim: int
  code_dim: int
  num_stages: int
  batch_size: int
  m: int
  scan_steps: int
  top_m_rows: int
  top_m_dim: int
  top_m_m: int
  repeats: int
  runs: int
  seed: int

  def __post_init__(self):
    for name in ('signal_dim', 'code_dim', 'num_stages', 'batch_size',
                 'scan_steps', 'top_m_rows', 'top_m_dim', 'repeats', 'runs'):
      validation.check_int_in_range(name, getattr(self, name), 1, 2**31 - 1)
    validation.check_int_in_range('seed', self.seed, 0, 2**31 - 1)
    validation.check_int_in_range('m (at most code_dim)', self.m, 1,
                                  self.code_dim)
    validation.check_int_in_range('top_m_m (at most top_m_dim)',
                                  self.top_m_m, 1, self.top_m_dim)


CONFIG = configs.define_config_flag(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs',
                 'training_step_benchmark_default.py'), Settings,
    help_string='A get_config() file of the sizes and the timing (the '
    'fields of Settings); override fields as --config.runs=1.')
flags.DEFINE_string('workdir', 'results/training_step_benchmark',
                    'Directory for results.json and results.md.')

FLAGS = flags.FLAGS

ENCODERS = ('LISTA', 'DeepL0Encoder', 'DeepMSparseEncoder', 'MLPEncoder')
STEP_TARGET = 1.5
TOP_M_TARGET = 0.5


def _products(key: jax.Array, shapes: list[tuple[int, int, int]]
              ) -> Callable[[], list[jax.Array]]:
  """A jitted call of the products `(b, k) @ (k, n)` for each `(b, k, n)`.

  The operands are fixed random arrays, distinct per product (XLA cannot
  share work between them), and every product is returned (materialized).
  """
  keys = jax.random.split(key, 2 * len(shapes))
  operands = [(jax.random.normal(keys[2 * i], (b, k)),
               jax.random.normal(keys[2 * i + 1], (k, n)))
              for i, (b, k, n) in enumerate(shapes)]
  products = jax.jit(lambda operands: [a @ b for a, b in operands])
  return lambda: products(operands)


def _step_products(name: str, *, batch: int, signal_dim: int, code_dim: int,
                   num_stages: int) -> list[tuple[int, int, int]]:
  """The `(b, k, n)` shapes of the matmuls in one training step.

  Forward: one product per layer. Backward: the gradient of each layer's
  weights and of its input, except the input of the first layer (the data).
  """
  if name == 'MLPEncoder':
    widths = [signal_dim] + [code_dim] * 4  # three hidden layers of width p
  else:  # W x, then S z in each of the K - 1 later stages
    widths = [signal_dim] + [code_dim] * num_stages
  shapes = []
  for layer, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
    shapes.append((batch, fan_in, fan_out))          # forward
    shapes.append((fan_in, batch, fan_out))          # weight gradient
    if layer:
      shapes.append((batch, fan_out, fan_in))        # input gradient
  return shapes


def _encoder(name: str, *, signal_dim: int, code_dim: int, num_stages: int,
             m: int, rngs: nnx.Rngs) -> nnx.Module:
  if name == 'MLPEncoder':
    return models.MLPEncoder(signal_dim, code_dim, rngs=rngs)
  kwargs = dict(num_stages=num_stages, tied=False, rngs=rngs)
  if name == 'DeepMSparseEncoder':
    kwargs['m'] = m
  return getattr(models, name)(signal_dim, code_dim, **kwargs)


def _training_calls(name: str, *, key: jax.Array, batch: int,
                    signal_dim: int, code_dim: int, num_stages: int, m: int,
                    scan_steps: int) -> dict[str, Callable[[], Any]]:
  """One `train.train_step` call, and one `train.train_steps` over a stack."""
  model_key, data_key = jax.random.split(key)
  model = _encoder(name, signal_dim=signal_dim, code_dim=code_dim,
                   num_stages=num_stages, m=m,
                   rngs=nnx.Rngs(params=model_key, dropout=model_key))
  model.train()
  optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
  graphdef, state = nnx.split((model, optimizer))
  x_key, y_key = jax.random.split(data_key)
  inputs = jax.random.normal(x_key, (scan_steps, batch, signal_dim))
  targets = jax.random.normal(y_key, (scan_steps, batch, code_dim))
  first_inputs, first_targets = inputs[0], targets[0]
  # The state is donated: each call continues from the previous one's.
  holder = {'state': state}

  def one_step():
    holder['state'], loss = train.train_step(graphdef, holder['state'],
                                             first_inputs, first_targets)
    return loss

  def scanned_steps():
    holder['state'], losses = train.train_steps(graphdef, holder['state'],
                                                inputs, targets)
    return losses

  return dict(step=one_step, scan=scanned_steps)


def _top_m_calls(*, key: jax.Array, rows: int, dim: int, m: int
                 ) -> dict[str, Callable[[], Any]]:
  """One matmul of the size of top_m, top_m, its gradient, the former op."""
  u_key, w_key = jax.random.split(key)
  u = jax.random.normal(u_key, (rows, dim))
  weights = jax.random.normal(w_key, (dim, dim))
  matmul = jax.jit(lambda u, w: u @ w)
  top_m = jax.jit(lambda u: ops.top_m(u, m))
  top_m_grad = jax.jit(jax.grad(lambda u: jnp.sum(ops.top_m(u, m)**2)))
  # The former implementation of top_m, kept in ops as the exact fallback.
  top_k_mask = ops._top_k_mask  # pylint: disable=protected-access
  by_top_k = jax.jit(lambda u: jnp.where(top_k_mask(u, m), u, 0))
  if not bool(jnp.array_equal(top_m(u), by_top_k(u))):
    raise AssertionError('top_m and the top_k reference disagree.')
  return dict(matmul=lambda: matmul(u, weights), top_m=lambda: top_m(u),
              top_m_grad=lambda: top_m_grad(u), top_k=lambda: by_top_k(u))


def _interleaved_ratios(calls: dict[str, Callable[[], Any]], reference: str,
                        repeats: int) -> dict[str, float]:
  """Seconds of each call and its ratio to `calls[reference]`.

  After one warm-up call each, the calls are timed in `repeats` rounds of
  one call each (`reporting.time_call`), so that every ratio compares calls
  made moments apart on this shared machine; the median over the rounds is
  kept, of the seconds and of the per-round ratios.
  """
  for call in calls.values():
    reporting.time_call(call, warmup=1, repeats=1)
  seconds = {name: [] for name in calls}
  for _ in range(repeats):
    for name, call in calls.items():
      seconds[name].append(reporting.time_call(call, warmup=0, repeats=1))
  result = {f'{name}_seconds': statistics.median(times)
            for name, times in seconds.items()}
  for name, times in seconds.items():
    if name != reference:
      result[f'{name}_ratio'] = statistics.median(
          t / r for t, r in zip(times, seconds[reference]))
  return result


def _spread(values: list[float]) -> dict[str, float]:
  return dict(median=statistics.median(values), min=min(values),
              max=max(values))


def run_benchmark(*, signal_dim: int, code_dim: int, num_stages: int,
                  batch_size: int, m: int, scan_steps: int, top_m_rows: int,
                  top_m_dim: int, top_m_m: int, repeats: int, runs: int,
                  seed: int) -> dict[str, Any]:
  """Runs every measurement `runs` times and returns the results."""
  key = jax.random.PRNGKey(seed)
  shapes = dict(batch=batch_size, signal_dim=signal_dim, code_dim=code_dim,
                num_stages=num_stages)
  per_run = []
  for run in range(runs):
    run_key = jax.random.fold_in(key, run)
    encoders = {}
    for index, name in enumerate(ENCODERS):
      encoder_key = jax.random.fold_in(run_key, index)
      calls = _training_calls(name, key=encoder_key, m=m,
                              scan_steps=scan_steps, **shapes)
      products = _products(encoder_key, _step_products(name, **shapes))
      times = _interleaved_ratios(
          dict(matmuls=products, step=calls['step'], scan=calls['scan']),
          'matmuls', repeats)
      # A scan call runs `scan_steps` steps.
      times['scan_step_seconds'] = times.pop('scan_seconds') / scan_steps
      times['scan_step_ratio'] = times.pop('scan_ratio') / scan_steps
      times['matmul_seconds'] = times.pop('matmuls_seconds')
      encoders[name] = times
      logging.info('run %d %-19s step %.2f x its matmuls (scanned: %.2f x)',
                   run + 1, name, times['step_ratio'],
                   times['scan_step_ratio'])
    top_m = _interleaved_ratios(
        _top_m_calls(key=jax.random.fold_in(run_key, len(ENCODERS)),
                     rows=top_m_rows, dim=top_m_dim, m=top_m_m),
        'matmul', repeats)
    logging.info('run %d top_m %.3f x one matmul (lax.top_k: %.3f x)',
                 run + 1, top_m['top_m_ratio'], top_m['top_k_ratio'])
    per_run.append(dict(encoders=encoders, top_m=top_m))

  summary = dict(
      encoders={name: {ratio: _spread([r['encoders'][name][ratio]
                                       for r in per_run])
                       for ratio in ('step_ratio', 'scan_step_ratio')}
                for name in ENCODERS},
      top_m={ratio: _spread([r['top_m'][ratio] for r in per_run])
             for ratio in ('top_m_ratio', 'top_m_grad_ratio', 'top_k_ratio')})
  device = jax.devices()[0]
  return dict(
      config=dict(signal_dim=signal_dim, code_dim=code_dim,
                  num_stages=num_stages, batch_size=batch_size, m=m,
                  scan_steps=scan_steps, top_m_rows=top_m_rows,
                  top_m_dim=top_m_dim, top_m_m=top_m_m, repeats=repeats,
                  runs=runs, seed=seed, optimizer='adam(1e-3)',
                  tied=False),
      targets=dict(step_ratio=STEP_TARGET, top_m_ratio=TOP_M_TARGET),
      environment=dict(jax_backend=jax.default_backend(),
                       device=device.device_kind, cpu_count=os.cpu_count(),
                       machine=platform.machine(), jax=jax.__version__),
      summary=summary, runs=per_run)


def _ratio(spread: dict[str, float]) -> str:
  return (f"{spread['median']:.2f}x ({spread['min']:.2f}-"
          f"{spread['max']:.2f})")


def markdown(results: dict[str, Any]) -> str:
  """The ratios as Markdown tables, with the setting in a caption."""
  config, environment = results['config'], results['environment']
  summary = results['summary']
  caption = (
      f"One training step (Adam, squared error on codes) at batch "
      f"{config['batch_size']}, n = {config['signal_dim']}, p = "
      f"{config['code_dim']}, {config['num_stages']} untied stages (M = "
      f"{config['m']}; the MLP has three hidden layers of width p), "
      "against the matmuls the step contains (forward, and the weight and "
      "input gradients), timed alone in the same run; "
      f"{environment['jax_backend']} ({environment['device']}, "
      f"{environment['cpu_count']} CPU cores). Median ratio of "
      f"{config['repeats']} rounds of interleaved calls after a warm-up; "
      f"median (min-max) over {config['runs']} runs. Target: at most "
      f"{STEP_TARGET}x.\n\n")
  steps = reporting.markdown_table(
      ['encoder', 'train_step / matmuls',
       f"train_steps (scan of {config['scan_steps']}) per step / matmuls"],
      [[name, _ratio(ratios['step_ratio']), _ratio(ratios['scan_step_ratio'])]
       for name, ratios in summary['encoders'].items()])
  top_m = summary['top_m']
  top_m_caption = (
      f"\n`ops.top_m` on {config['top_m_rows']} x {config['top_m_dim']} "
      f"(M = {config['top_m_m']}) against one ({config['top_m_rows']} x "
      f"{config['top_m_dim']}) @ ({config['top_m_dim']} x "
      f"{config['top_m_dim']}) matmul. Target: at most {TOP_M_TARGET}x.\n\n")
  top_m_table = reporting.markdown_table(
      ['op', 'time / matmul'],
      [['ops.top_m (threshold search)', _ratio(top_m['top_m_ratio'])],
       ['gradient of sum(top_m(u)^2)', _ratio(top_m['top_m_grad_ratio'])],
       ['former top_m (lax.top_k)', _ratio(top_m['top_k_ratio'])]])
  return caption + steps + top_m_caption + top_m_table


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  python_logging.getLogger('jax').setLevel(python_logging.WARNING)
  settings = configs.to_settings(Settings, CONFIG.value)
  results = run_benchmark(**dataclasses.asdict(settings))
  table = markdown(results)
  reporting.write_results(FLAGS.workdir, results, table)
  print(table)


if __name__ == '__main__':
  app.run(main)
