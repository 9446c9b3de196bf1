r"""MNIST classification with DDSE and baselines I-V: the DDSE paper's Figs. 3-6.

    python experiments/ddse.py --data_dir=data                  # quick preset
    python experiments/ddse.py --data_dir=data --sweeps= --num_epochs=1
    python experiments/ddse.py --preset=paper --data_dir=data   # for a GPU
    # The same, as four processes sharing one GPU, then the report:
    for i in 0 1 2 3; do python experiments/ddse.py --preset=paper \
        --data_dir=data --num_shards=4 --shard_index=$i & done; wait
    python experiments/ddse.py --preset=paper --data_dir=data

Trains the six methods (I fc, II fc_dropout, III fc_dropconnect, IV
lista_dropout, V ddse_no_shortcuts, DDSE) at the default setting and at
every point of the selected sweeps (s/n: Fig. 3, m: Fig. 4, ts/t: Fig. 5,
k: Fig. 6), each (setting, method) in its own resumable unit
`<workdir>/units/<unit>/`. Writes the combined `results.json`, `results.md`
(the default-setting table, one table per sweep, the compactness of the
default DDSE) and one PNG per swept figure to --workdir. Interrupt it at any
time and run the same command again: finished units are read back and the
interrupted one resumes after its last finished epoch.

Presets:
  quick  two CPU cores, well under an hour: m = 256 instead of 1024 (the m
         sweep is 128/256/512 instead of 800..2000), 3 epochs per unit, three
         points of the s/n and k sweeps and two of ts/t: 40 units, about 16
         minutes on two idle cores (extrapolated from measured units), up to
         twice that on a busy machine.
  paper  the paper's m = 1024 and the full sweeps (7 points each, k = 1..6),
         40 epochs per unit with plateau decay of the learning rate: 120
         units, meant for a GPU: about 25 minutes on one H100 as eight
         shards at once (--num_shards; results/ddse_paper/ holds each
         unit's train_seconds).
Every flag below overrides its preset value.
"""

import logging as python_logging
import os

from absl import app
from absl import flags
from absl import logging

from l0enc import data
from l0enc import ddse
from l0enc.experiments import ddse as ddse_unit
from l0enc.experiments import ddse_reports
from l0enc.experiments import ddse_sweeps
from l0enc import reporting
from l0enc import validation

_PAPER_SWEEPS = {name: sweep.paper_values
                 for name, sweep in ddse_sweeps.SWEEPS.items()}
PRESETS = {
    'quick': dict(
        code_dim=256, num_epochs=3,
        sweeps={'sparsity_ratio': (0.1, 0.25, 0.5),
                'code_dim': (128, 256, 512),
                'train_fraction': (0.1, 1.0),
                'num_stages': (1, 2, 4)},
        note=('Reduced budget (quick preset): a smaller m and fewer sweep '
              "points than the paper's (m = 1024, m from 800 to 2000, 6-7 "
              'points per sweep) and few epochs: not converged, not '
              "comparable to the paper's numbers.")),
    'paper': dict(
        code_dim=1024, num_epochs=40, sweeps=_PAPER_SWEEPS,
        note=("The paper's defaults and sweep ranges (ticks between the "
              "paper's end points are ours).")),
}
_SWEEP_FLAGS = {'sparsity_ratio': 'sweep_sparsity_ratio',
                'code_dim': 'sweep_code_dim',
                'train_fraction': 'sweep_train_fraction',
                'num_stages': 'sweep_num_stages'}

flags.DEFINE_enum('preset', 'quick', list(PRESETS),
                  'Defaults for the flags below: "quick" runs well under an '
                  'hour on two CPU cores (m = 256, 3 epochs, subsets of the '
                  'sweeps), "paper" is the full experiment for a GPU.')
flags.DEFINE_list('methods', list(ddse.MODEL_KINDS),
                  'Methods to train, from ' + ', '.join(ddse.MODEL_KINDS) +
                  ' (baselines I-V, then DDSE).')
flags.DEFINE_list('sweeps', None,
                  'Sweeps to run, from ' + ', '.join(ddse_sweeps.SWEEPS) +
                  ' (Figs. 3-6); empty (--sweeps=) for the default setting '
                  "only (default: all, with the preset's values).")
for _name, _flag in _SWEEP_FLAGS.items():
  flags.DEFINE_list(_flag, None,
                    f'Values of the {ddse_sweeps.SWEEPS[_name].label} sweep '
                    f'({ddse_sweeps.SWEEPS[_name].figure}), comma '
                    "separated (default: the preset's).")
flags.DEFINE_enum('dataset', 'mnist', ddse_unit.DATASETS,
                  'mnist, or synthetic (tiny built-in images, for a smoke '
                  'test of the pipeline).')
flags.DEFINE_float('sparsity_ratio', 0.25, 'Default s/n (paper: 1/4); s is '
                   'rounded to an integer in [1, n].')
flags.DEFINE_integer('code_dim', None, "Default feature dimension m (paper: "
                     "1024; default: the preset's).", lower_bound=1)
flags.DEFINE_integer('num_stages', 2, 'Default number of recurrent stages k; '
                     'the networks have k + 1 layers (paper: 2).',
                     lower_bound=1)
flags.DEFINE_float('train_fraction', 1.0, 'Default ts/t, the class-'
                   'proportional share of the training split used.')
flags.DEFINE_integer('num_epochs', None, "Epochs per unit (default: the "
                     "preset's).", lower_bound=1)
flags.DEFINE_integer('batch_size', 128, 'Minibatch size (paper: 128).',
                     lower_bound=1)
flags.DEFINE_float('learning_rate', None,
                   'Initial SGD learning rate of every method (paper: 0.01, '
                   'which learns slowly); default: per method, tuned on the '
                   'validation split (l0enc.experiments.ddse.'
                   'DEFAULT_LEARNING_RATES).')
flags.DEFINE_float('momentum', 0.9, 'SGD momentum (paper: 0.9).')
flags.DEFINE_float('lr_decay_factor', 0.1, 'The learning rate is multiplied '
                   'by this when the validation error stalls.')
flags.DEFINE_integer('lr_patience', 3, 'Epochs without validation '
                     'improvement before the learning rate decays.',
                     lower_bound=1)
flags.DEFINE_integer('max_lr_decays', 2, 'At most this many decays.',
                     lower_bound=0)
flags.DEFINE_integer('project_every', 15, 'DDSE and V: PGD projects after '
                     'every this many SGD steps (paper: 15).', lower_bound=1)
flags.DEFINE_integer('validation_size', None, 'Training images held out as '
                     'the validation split (learning-rate schedule, tuning; '
                     'default: 5000 of the 60,000 MNIST training images, 200 '
                     'of the 1200 synthetic ones).', lower_bound=1)
flags.DEFINE_bool('repeat_subset', True, 'Repeat a training subset (ts < t) '
                  'about t/ts times per epoch, so that every training '
                  'fraction gets as many SGD steps.')
flags.DEFINE_float('max_rotation_degrees', 10.0, 'Augmentation: largest '
                   'rotation (degrees); 0 for none. Digits are never '
                   'flipped.')
flags.DEFINE_float('max_scale_change', 0.1, 'Augmentation: scale factors in '
                   '[1 - this, 1 + this].')
flags.DEFINE_float('max_blur_sigma', 0.5, 'Augmentation: Gaussian blur of '
                   'standard deviation up to this (pixels).')
flags.DEFINE_float('noise_stddev', 0.03, 'Augmentation: additive Gaussian '
                   'noise of this standard deviation (pixels in [0, 1]).')
flags.DEFINE_bool('augment', True, 'Apply the augmentations above; '
                  '--noaugment trains on the plain images.')
flags.DEFINE_bool('compactness', True, 'Measure the default DDSE: nonzero '
                  'weights, file size of its sparse export, dense vs sparse '
                  'inference time on the test set.')
flags.DEFINE_integer('seed', 0, 'Seed of the split, subsets, models, data '
                     'order and augmentation.', lower_bound=0)
flags.DEFINE_integer('num_shards', 1, 'Deal the units into this many shards '
                     'and run only one of them (--shard_index), so that '
                     'several processes or GPUs share one --workdir; then '
                     'run once more without sharding to gather the report.',
                     lower_bound=1)
flags.DEFINE_integer('shard_index', 0, 'The shard this process runs, in '
                     '[0, --num_shards).', lower_bound=0)
flags.DEFINE_string('data_dir', data.default_data_dir(), 'Directory with '
                    'mnist.npz or the four MNIST IDX files (default: '
                    f'${data.DATA_DIR_ENV}); without it, tensorflow-datasets '
                    'is tried.')
flags.DEFINE_string('workdir', None, 'Output and checkpoint directory '
                    '(default: workdir/ddse_<preset>).')

FLAGS = flags.FLAGS
validation.register_flag_checks(
    positive=('learning_rate',),
    nonnegative=('max_rotation_degrees', 'max_blur_sigma', 'noise_stddev'),
    fraction=('sparsity_ratio', 'train_fraction', 'lr_decay_factor'),
    below_one=('momentum', 'max_scale_change'), existing_dirs=('data_dir',))
flags.register_multi_flags_validator(
    ['shard_index', 'num_shards'],
    lambda values: values['shard_index'] < values['num_shards'],
    message='--shard_index must be in [0, --num_shards)')


def base_config_from_flags() -> ddse_unit.Config:
  """The default setting, from the preset and the flags (validated)."""
  preset = PRESETS[FLAGS.preset]
  pick = lambda name: (getattr(FLAGS, name) if getattr(FLAGS, name)
                       is not None else preset[name])
  augmentation = dict(max_rotation_degrees=FLAGS.max_rotation_degrees,
                      max_scale_change=FLAGS.max_scale_change,
                      max_blur_sigma=FLAGS.max_blur_sigma,
                      noise_stddev=FLAGS.noise_stddev)
  if not FLAGS.augment:
    augmentation = {name: 0.0 for name in augmentation}
  return ddse_unit.Config(
      dataset=FLAGS.dataset, sparsity_ratio=FLAGS.sparsity_ratio,
      code_dim=pick('code_dim'), num_stages=FLAGS.num_stages,
      train_fraction=FLAGS.train_fraction, num_epochs=pick('num_epochs'),
      batch_size=FLAGS.batch_size, learning_rate=FLAGS.learning_rate,
      momentum=FLAGS.momentum, lr_decay_factor=FLAGS.lr_decay_factor,
      lr_patience=FLAGS.lr_patience, max_lr_decays=FLAGS.max_lr_decays,
      project_every=FLAGS.project_every,
      validation_size=FLAGS.validation_size or (
          5000 if FLAGS.dataset == 'mnist' else 200),
      repeat_subset=FLAGS.repeat_subset, seed=FLAGS.seed,
      data_dir=FLAGS.data_dir, **augmentation)


def sweeps_from_flags() -> dict[str, tuple[float, ...]]:
  """`{sweep: values}` from --sweeps, the per-sweep flags and the preset."""
  names = (list(ddse_sweeps.SWEEPS) if FLAGS.sweeps is None
           else [name for name in FLAGS.sweeps if name])
  unknown = [name for name in names if name not in ddse_sweeps.SWEEPS]
  if unknown:
    raise app.UsageError(f'Unknown sweep(s) {unknown}; choose from '
                         f'{list(ddse_sweeps.SWEEPS)}.')
  sweeps = {}
  for name in names:
    values = getattr(FLAGS, _SWEEP_FLAGS[name])
    sweeps[name] = (PRESETS[FLAGS.preset]['sweeps'][name] if values is None
                    else tuple(float(value) for value in values))
  return sweeps


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  python_logging.getLogger('jax').setLevel(python_logging.WARNING)
  unknown = [m for m in FLAGS.methods if m not in ddse.MODEL_KINDS]
  if unknown:
    raise app.UsageError(f'Unknown method(s) {unknown}; choose from '
                         f'{list(ddse.MODEL_KINDS)}.')
  base = base_config_from_flags()
  sweeps = sweeps_from_flags()
  # Every unit's configuration is checked before the first one trains.
  units = ddse_sweeps.plan(base, sweeps, FLAGS.methods).units
  logging.info('%d units: %s', len(units), ', '.join(units))
  workdir = FLAGS.workdir or os.path.join('workdir', f'ddse_{FLAGS.preset}')
  combined = ddse_sweeps.run_experiment(
      base, sweeps, workdir, FLAGS.methods,
      measure_compactness=FLAGS.compactness,
      shard_index=FLAGS.shard_index, num_shards=FLAGS.num_shards)
  if FLAGS.num_shards > 1:
    logging.info('Shard %d of %d done (%d units); run without --num_shards '
                 'to write the report.', FLAGS.shard_index, FLAGS.num_shards,
                 len(combined['units']))
    return
  combined['preset'] = FLAGS.preset
  caption = ddse_reports.budget_caption(combined, FLAGS.preset,
                                           PRESETS[FLAGS.preset]['note'])
  combined['caption'] = caption
  reporting.write_json_atomic(os.path.join(workdir, 'results.json'), combined)
  text = ddse_reports.report(combined, caption)
  reporting.write_text_atomic(os.path.join(workdir, 'results.md'), text)
  for sweep in sweeps:
    figure = ddse_reports.sweep_figure(combined, sweep, caption)
    number = ddse_sweeps.SWEEPS[sweep].figure.split()[-1].rstrip('.')
    reporting.save_figure_atomic(
        figure, os.path.join(workdir, f'fig{number}_{sweep}.png'), dpi=120)
  print(text)


if __name__ == '__main__':
  app.run(main)
