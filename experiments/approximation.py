r"""Code approximation by deep l0 encoders: the l0 paper's Tables 1-3.

    python experiments/approximation.py                     # quick, synthetic
    python experiments/approximation.py --preset=paper --data_dir=../shared/data

For every (problem, p) it learns or takes the dictionary, computes the
optimal codes, evaluates IHT at 2/5/10 iterations, trains the baseline
encoder and the deep encoder, and times the encoder against 10 IHT
iterations. Each setting lives in `<workdir>/<problem>_p<p>/` and resumes
there after a kill; the combined `results.json`, `results.md` (the paper's
layout, its numbers in brackets for MNIST) and `errors.png` go to --workdir.
"""

import dataclasses
import logging as python_logging
import os

from absl import app
from absl import flags
from absl import logging
import jax

from l0enc import approximation
from l0enc import reporting
from l0enc import train
from l0enc import validation

PRESETS = {
    # Built in, no download, a few minutes on two CPU cores. HELU_sigma stays
    # at 0.2: on this problem's validation split, annealing it (the paper's
    # schedule) ended worse than keeping it (evaluation uses exact HELU).
    'quick': dict(dataset='synthetic', problems=('l0', 'msparse'),
                  code_dims=(128,), lam=0.05, m=8, num_epochs=30,
                  baseline_epochs=30, optimizer='adam', learning_rates=(1e-3,),
                  min_sigma=0.2),
    # The paper's Experiment A on MNIST (16x16 patches, n = 256), with the
    # learning rate of each encoder chosen on the validation split.
    'paper': dict(dataset='mnist', problems=('l0', 'msparse'),
                  code_dims=(128, 256, 512), lam=0.25, m=32, num_epochs=50,
                  baseline_epochs=50, optimizer='adam',
                  learning_rates=(1e-3, 1e-4, 1e-5), min_sigma=0.2),
}

flags.DEFINE_enum('preset', 'quick', list(PRESETS),
                  'Defaults for the flags below: "quick" is a synthetic run '
                  'of a few minutes, "paper" the MNIST Tables 1-3.')
flags.DEFINE_enum('dataset', None, approximation.DATASETS,
                  'Data set (default: the preset\'s).')
flags.DEFINE_multi_enum('problem', None, approximation.PROBLEMS,
                        'Problem(s): l0 = problem (1), msparse = problem (2); '
                        'repeat the flag for both (default: the preset\'s).')
flags.DEFINE_multi_integer('p', None, 'Dictionary size(s) p; repeat the flag '
                           'for several (default: the preset\'s).')
flags.DEFINE_float('lam', None, 'l0 weight of 1/2||x-Da||^2 + lam||a||_0; the '
                   "paper's lam = 0.5 is 0.25 here (default: the preset's).")
flags.DEFINE_integer('m', None, 'Sparsity M of problem (2) (default: the '
                     "preset's).")
flags.DEFINE_integer('num_stages', 2, 'Stages K of the deep encoder.')
flags.DEFINE_integer('num_epochs', None, 'Training epochs of the deep encoder '
                     "(default: the preset's).")
flags.DEFINE_integer('baseline_epochs', None, 'Training epochs of the '
                     "baseline encoder (default: the preset's).")
flags.DEFINE_integer('batch_size', 128, 'Minibatch size (paper: 128).')
flags.DEFINE_enum('optimizer', None, list(approximation.OPTIMIZERS),
                  "sgd (the paper's, no momentum) or adam (default: the "
                  "preset's).")
flags.DEFINE_multi_float('learning_rate', None, 'Candidate learning rate(s); '
                         'repeat the flag for several: each encoder is '
                         'trained with each and the best on the validation '
                         "split is kept (default: the preset's).")
flags.DEFINE_float('clip_norm', 1.0, 'Global gradient-norm clipping, applied '
                   'before the optimizer.')
flags.DEFINE_float('min_sigma', None, 'Floor of the HELU_sigma annealing '
                   '(0.2, then divided by 10 each epoch); 0.2 keeps sigma '
                   "constant (default: the preset's).")
flags.DEFINE_integer('seed', 0, 'Seed of data, dictionary, models and order.')
flags.DEFINE_string('data_dir', None, 'Directory with mnist.npz or the four '
                    'MNIST IDX files; without it, tensorflow-datasets is '
                    'tried.')
flags.DEFINE_string('workdir', None, 'Output and checkpoint directory '
                    '(default: workdir/approximation_<preset>).')

FLAGS = flags.FLAGS
# Checked while parsing, before anything is computed; the remaining (and
# cross-flag) checks are `approximation.Config`'s, also made before the
# first computation.
validation.register_flag_checks(
    positive=('p', 'lam', 'm', 'num_stages', 'num_epochs', 'baseline_epochs',
              'batch_size', 'learning_rate', 'clip_norm'),
    nonnegative=('min_sigma', 'seed'), existing_dirs=('data_dir',))
flags.register_validator(
    'min_sigma', lambda sigma: sigma is None or
    sigma <= train.TrainConfig().initial_sigma,
    message=f'must be at most the initial HELU sigma, '
    f'{train.TrainConfig().initial_sigma:g}')


def configs_from_flags() -> list[approximation.Config]:
  """One `Config` per (problem, p), from the preset and the flags."""
  preset = PRESETS[FLAGS.preset]
  pick = lambda name, key: (getattr(FLAGS, name)
                            if getattr(FLAGS, name) is not None
                            else preset[key])
  common = dict(
      dataset=pick('dataset', 'dataset'), lam=pick('lam', 'lam'),
      m=pick('m', 'm'), num_epochs=pick('num_epochs', 'num_epochs'),
      baseline_epochs=pick('baseline_epochs', 'baseline_epochs'),
      optimizer=pick('optimizer', 'optimizer'),
      learning_rates=tuple(pick('learning_rate', 'learning_rates')),
      num_stages=FLAGS.num_stages, batch_size=FLAGS.batch_size,
      clip_norm=FLAGS.clip_norm, min_sigma=pick('min_sigma', 'min_sigma'),
      seed=FLAGS.seed,
      data_dir=FLAGS.data_dir)
  return [approximation.Config(problem=problem, code_dim=code_dim, **common)
          for problem in pick('problem', 'problems')
          for code_dim in pick('p', 'code_dims')]


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  python_logging.getLogger('jax').setLevel(python_logging.WARNING)
  # Full float32 matmuls everywhere: GPUs default to TF32, which would make
  # the optimal codes inexact and time the encoder at lower precision than
  # the IHT it is compared with.
  jax.config.update('jax_default_matmul_precision', 'highest')
  # Every configuration is checked before the first long computation.
  configs = configs_from_flags()
  workdir = FLAGS.workdir or os.path.join('workdir',
                                          f'approximation_{FLAGS.preset}')
  results = []
  for config in configs:
    logging.info('Setting: %s', dataclasses.asdict(config))
    results.append(approximation.run(
        config, os.path.join(workdir, f'{config.problem}_p{config.code_dim}'),
        dictionary_dir=os.path.join(workdir, 'dictionaries')))
  tables = approximation.paper_tables(results)
  speed = reporting.markdown_table(
      ['setting', 'test signals', 'encoder (s)', 'IHT, 10 it. (s)',
       'speed-up', 'device'],
      [[f"{r['config']['problem']}, p = {r['config']['code_dim']}",
        r['speed']['num_signals'], f"{r['speed']['encoder_seconds']:.4f}",
        f"{r['speed']['iht_10_seconds']:.4f}",
        f"{r['speed']['speedup']:.1f}x", r['device']] for r in results])
  chosen = lambda r, name: (
      f"{r['learning_rate_selection'][name]['learning_rate']:g}")
  problems = reporting.markdown_table(
      ['setting', 'train / test signals', 'mean nonzeros of the optimal codes',
       '‖D‖₂²', 'learning rate deep / baseline', 'deep encoder training (s)',
       'baseline training (s)', 'device'],
      [[f"{r['config']['problem']}, p = {r['config']['code_dim']}",
        f"{r['data']['num_train']} / {r['data']['num_test']}",
        f"{r['data']['mean_nonzeros_of_optimal_codes']:.1f}",
        f"{r['data']['dictionary_lipschitz']:.1f}",
        f"{chosen(r, 'deep')} / {chosen(r, 'baseline')}",
        f"{sum(e['seconds'] for e in r['history']['deep']):.0f}",
        f"{sum(e['seconds'] for e in r['history']['baseline']):.0f}",
        r['device']] for r in results])
  config = configs[0]
  initial_sigma = train.TrainConfig().initial_sigma
  sigma_schedule = (
      f'HELU sigma constant at {initial_sigma:g}'
      if config.min_sigma >= initial_sigma else
      f'HELU sigma {initial_sigma:g} divided by 10 each epoch down to '
      f'{config.min_sigma:g}')
  report = (
      f'{tables}\n**Encoding the test set** (trained {config.num_stages}-stage '
      'encoder against 10 IHT iterations; median of '
      f'{approximation.SPEED_REPEATS} runs after a warm-up)'
      f'\n\n{speed}\n**Settings** ({config.dataset}; {config.optimizer}, '
      f"learning rate {' / '.join(f'{r:g}' for r in config.learning_rates)}"
      f"{' (chosen on validation)' if len(config.learning_rates) > 1 else ''}"
      f', batch {config.batch_size}, '
      f'{config.num_epochs} epochs (baseline {config.baseline_epochs}), '
      f'gradient clipping {config.clip_norm:g}, {sigma_schedule}; '
      f'{config.validation_fraction:.0%} of the training signals held out '
      f'for validation)\n\n{problems}')
  reporting.write_json_atomic(os.path.join(workdir, 'results.json'), results)
  reporting.write_text_atomic(os.path.join(workdir, 'results.md'), report)
  approximation.plot(results, os.path.join(workdir, 'errors.png'))
  print(report)


if __name__ == '__main__':
  app.run(main)
