r"""Code approximation by deep l0 encoders: the l0 paper's Tables 1-3.

    python experiments/approximation.py                     # quick, synthetic
    python experiments/approximation.py --preset=paper --data_dir=DIR
    python experiments/approximation.py --preset=paper_literal --data_dir=DIR

The paper preset runs in the calibrated regime: ZCA-whitened patches and a
dictionary whose unstated settings (whitening regularizer, l1 weight) were
chosen per p by experiments/calibrate_regime.py to match the paper's IHT
rows; it reads that choice from --calibration. paper_literal is the paper's
preprocessing read literally (no whitening), kept as the previous regime.

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

from l0enc import reporting
from l0enc import train
from l0enc import validation
from l0enc.experiments import approximation
from l0enc.experiments import approximation_reports
from l0enc.experiments import approximation_training
from l0enc.experiments import calibration

PRESETS = {
    # Built in, no download, a few minutes on two CPU cores. HELU_sigma stays
    # at 0.2: on this problem's validation split, annealing it (the paper's
    # schedule) ended worse than keeping it (evaluation uses exact HELU).
    'quick': dict(dataset='synthetic', problems=('l0', 'msparse'),
                  code_dims=(128,), lam=0.05, m=8, num_epochs=30,
                  baseline_epochs=30, sgd_learning_rates=(),
                  adam_learning_rates=(1e-3,), min_sigma=0.2,
                  dictionary_steps=2000, calibration=None,
                  previous_results=None),
    # The paper's Experiment A on MNIST (16x16 patches, n = 256) in the
    # calibrated regime. Each encoder is trained with the paper's optimizer
    # (SGD at 0.01, no momentum) and with Adam at two rates; the validation
    # split chooses among the three. The deep encoder's epochs are cheap (about
    # a second each on two CPU cores at p = 512), so it gets twice the
    # baseline's.
    'paper': dict(dataset='mnist', problems=('l0', 'msparse'),
                  code_dims=(128, 256, 512), lam=0.25, m=32, num_epochs=100,
                  baseline_epochs=50, sgd_learning_rates=(0.01,),
                  adam_learning_rates=(1e-3, 1e-4), min_sigma=0.2,
                  dictionary_steps=600,
                  calibration='results/approximation_calibration/'
                              'results.json',
                  previous_results='results/approximation_paper/'
                                   'results.json'),
    # The previous regime: the paper's preprocessing read literally, no
    # whitening (results/approximation_paper).
    'paper_literal': dict(dataset='mnist', problems=('l0', 'msparse'),
                          code_dims=(128, 256, 512), lam=0.25, m=32,
                          num_epochs=50, baseline_epochs=50,
                          sgd_learning_rates=(),
                          adam_learning_rates=(1e-3, 1e-4, 1e-5),
                          min_sigma=0.2, dictionary_steps=2000,
                          calibration=None, previous_results=None),
}

flags.DEFINE_enum('preset', 'quick', list(PRESETS),
                  'Defaults for the flags below: "quick" is a synthetic run '
                  'of a few minutes, "paper" the MNIST Tables 1-3 in the '
                  'calibrated (whitened) regime, "paper_literal" the same '
                  'without whitening.')
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
flags.DEFINE_boolean('untied_stages', False, 'Give each stage of the deep '
                     'encoder its own S and thresholds (our variant; the '
                     'paper shares them between its two stages).')
flags.DEFINE_integer('num_epochs', None, 'Training epochs of the deep encoder '
                     "(default: the preset's).")
flags.DEFINE_integer('baseline_epochs', None, 'Training epochs of the '
                     "baseline encoder (default: the preset's).")
flags.DEFINE_integer('batch_size', 128, 'Minibatch size (paper: 128).')
flags.DEFINE_multi_float('sgd_learning_rate', None, 'Candidate rate(s) of '
                         "plain SGD (the paper's optimizer, no momentum); "
                         'repeat the flag for several. Each encoder is '
                         'trained with every SGD and Adam candidate and the '
                         'best on the validation split is kept (default: '
                         "the preset's).")
flags.DEFINE_multi_float('adam_learning_rate', None, 'Candidate rate(s) of '
                         "Adam (default: the preset's).")
flags.DEFINE_boolean('no_sgd', False, 'Train no SGD candidate (an empty '
                     '--sgd_learning_rate cannot be given as a flag).')
flags.DEFINE_boolean('no_adam', False, 'Train no Adam candidate.')
flags.DEFINE_integer('dictionary_steps', None, 'Minibatches of MNIST '
                     "dictionary learning (default: the preset's).")
flags.DEFINE_string('calibration', None, 'results.json of '
                    'experiments/calibrate_regime.py: the whitening '
                    'regularizer and dictionary l1 weight chosen for each p '
                    "(default: the preset's; 'none' for no whitening).")
flags.DEFINE_float('clip_norm', 1.0, 'Global gradient-norm clipping, applied '
                   'before the optimizer.')
flags.DEFINE_float('min_sigma', None, 'Floor of the HELU_sigma annealing '
                   '(0.2, then divided by 10 each epoch); 0.2 keeps sigma '
                   "constant (default: the preset's).")
flags.DEFINE_integer('seed', 0, 'Seed of data, dictionary, models and order.')
flags.DEFINE_string('data_dir', None, 'Directory with mnist.npz or the four '
                    'MNIST IDX files; without it, tensorflow-datasets is '
                    'tried.')
flags.DEFINE_string('dictionary_dir', os.path.join('workdir', 'dictionaries'),
                    'Cache of learned MNIST dictionaries (and whitenings), '
                    'shared with experiments/calibrate_regime.py.')
flags.DEFINE_string('previous_results', None, 'results.json of another '
                    'regime, shown below the tables as a second, labelled '
                    "block (default: the preset's; 'none' for none).")
flags.DEFINE_string('workdir', None, 'Output and checkpoint directory '
                    '(default: workdir/approximation_<preset>).')

FLAGS = flags.FLAGS
# Checked while parsing, before anything is computed; the remaining (and
# cross-flag) checks are `approximation.Config`'s, also made before the
# first computation.
validation.register_flag_checks(
    positive=('p', 'lam', 'm', 'num_stages', 'num_epochs', 'baseline_epochs',
              'batch_size', 'sgd_learning_rate', 'adam_learning_rate',
              'clip_norm', 'dictionary_steps'),
    nonnegative=('min_sigma', 'seed'), existing_dirs=('data_dir',))
for _name in ('calibration', 'previous_results'):
  flags.register_validator(
      _name, lambda path: path in (None, 'none') or os.path.isfile(path),
      message="must name an existing results.json (or be 'none')")
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
  calibration_path = pick('calibration', 'calibration')
  if calibration_path == 'none':
    calibration_path = None
  chosen = (calibration.read_choice(calibration_path)
            if calibration_path else {})
  common = dict(
      dataset=pick('dataset', 'dataset'), lam=pick('lam', 'lam'),
      m=pick('m', 'm'), num_epochs=pick('num_epochs', 'num_epochs'),
      baseline_epochs=pick('baseline_epochs', 'baseline_epochs'),
      sgd_learning_rates=() if FLAGS.no_sgd else tuple(
          pick('sgd_learning_rate', 'sgd_learning_rates')),
      adam_learning_rates=() if FLAGS.no_adam else tuple(
          pick('adam_learning_rate', 'adam_learning_rates')),
      num_stages=FLAGS.num_stages, tied=not FLAGS.untied_stages,
      batch_size=FLAGS.batch_size,
      clip_norm=FLAGS.clip_norm, min_sigma=pick('min_sigma', 'min_sigma'),
      dictionary_steps=pick('dictionary_steps', 'dictionary_steps'),
      seed=FLAGS.seed,
      data_dir=FLAGS.data_dir)
  configs = []
  for code_dim in pick('p', 'code_dims'):
    if calibration_path and code_dim not in chosen:
      raise ValueError(f'--calibration={calibration_path} holds no choice '
                       f'for p = {code_dim} (it has {sorted(chosen)}); run '
                       'experiments/calibrate_regime.py for it first.')
    regime = chosen.get(code_dim, {})
    configs += [approximation.Config(problem=problem, code_dim=code_dim,
                                     **common, **regime)
                for problem in pick('problem', 'problems')]
  return configs


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
  previous_path = PRESETS[FLAGS.preset]['previous_results'] if (
      FLAGS.previous_results is None) else FLAGS.previous_results
  previous_path = None if previous_path == 'none' else previous_path
  workdir = FLAGS.workdir or os.path.join('workdir',
                                          f'approximation_{FLAGS.preset}')
  results = []
  for config in configs:
    logging.info('Setting: %s', dataclasses.asdict(config))
    results.append(approximation_training.run(
        config, os.path.join(workdir, f'{config.problem}_p{config.code_dim}'),
        dictionary_dir=FLAGS.dictionary_dir))
  report = approximation_reports.report(results)
  if previous_path:
    report += (f'\n## Previous regime ({previous_path})\n\n'
               'The same tables before the calibrated regime, kept for '
               'comparison.\n\n' + approximation_reports.report(
                   reporting.read_json(previous_path)))
  reporting.write_json_atomic(os.path.join(workdir, 'results.json'), results)
  reporting.write_text_atomic(os.path.join(workdir, 'results.md'), report)
  approximation_reports.plot(results, os.path.join(workdir, 'errors.png'))
  print(report)


if __name__ == '__main__':
  app.run(main)
