"""Training and running one setting of the code-approximation experiment.

Each encoder (the baseline and the deep one) is trained once per candidate
(optimizer, learning rate) and the candidate with the lowest validation
error is kept (`train_with_selected_rate`). `run(config, workdir)` does one
(dataset, problem, p) setting end to end as a resumable unit
(`units.run_unit`): every expensive intermediate is cached in `workdir`
(the preprocessed problem with its codes, the training checkpoints, the
results), so a killed run resumes where it stopped, and a finished one is
read back from its `results.json`. `benchmark_trained_encoder` times a
finished setting's encoders again on another machine.
"""

import logging
import os
import statistics
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
import numpy as np

from l0enc import adaptive_solvers
from l0enc import checkpoint
from l0enc import dictionary as dictionary_lib
from l0enc import divergence
from l0enc import metrics
from l0enc import reporting
from l0enc import solvers
from l0enc import train
from l0enc import validation
from l0enc.experiments import approximation
from l0enc.experiments import units

SPEED_REPEATS = 20  # Timed runs of the encoding benchmark (the median is kept).
RESULTS_FILE = 'results.json'  # Of each setting, in its workdir.

def _metric_fn(outputs, targets):
  return {'prediction_error': metrics.prediction_error(outputs, targets)}


def _fit_options(config: approximation.Config, num_epochs: int,
                 optimizer: str, learning_rate: float) -> dict[str, Any]:
  """`train.fit`'s `config` and `tx` for the encoders of this experiment."""
  return dict(
      config=train.TrainConfig(num_epochs=num_epochs,
                               batch_size=config.batch_size,
                               min_sigma=config.min_sigma),
      tx=train.make_optimizer(optimizer, learning_rate,
                              clip_norm=config.clip_norm))


def candidate_name(optimizer: str, learning_rate: float) -> str:
  """`'adam_lr0.001'`: the checkpoint directory and label of a candidate."""
  return f'{optimizer}_lr{learning_rate:g}'


def _train(model, problem: approximation.Problem,
           config: approximation.Config, num_epochs: int, optimizer: str,
           learning_rate: float, workdir: str) -> list[dict[str, Any]]:
  fit_part, validation_part = approximation.split_indices(
      config, len(problem.x_train))
  result = train.fit(
      model, problem.x_train[fit_part], problem.codes_train[fit_part],
      key=jax.random.PRNGKey(config.seed), workdir=workdir,
      **_fit_options(config, num_epochs, optimizer, learning_rate),
      metric_fn=_metric_fn,
      x_eval=problem.x_train[validation_part],
      y_eval=problem.codes_train[validation_part])
  return [record._asdict() for record in result.history]


class Trained(NamedTuple):
  """The encoders of one model trained with every candidate.

  Attributes:
    model: the candidate with the lowest final validation error.
    history: its per-epoch training record.
    selection: JSON-able: `{'optimizer', 'learning_rate', 'validation_error':
      {candidate name: final validation prediction error}, 'by_optimizer':
      {optimizer: the name of its best candidate}, 'diverged': {candidate
      name: {'epoch', 'step'}}}`; a candidate that diverged is left out of
      the choice.
    best_of_optimizer: `{optimizer: model}`, each optimizer's best candidate
      (by validation), to report both optimizers on the test set.
  """
  model: nnx.Module
  history: list[dict[str, Any]]
  selection: dict[str, Any]
  best_of_optimizer: dict[str, nnx.Module]


def train_with_selected_rate(
    build: Callable[[], nnx.Module], problem: approximation.Problem,
    config: approximation.Config, num_epochs: int, workdir: str) -> Trained:
  """Trains `build()` once per candidate (optimizer, rate); keeps the best.

  The choice uses only the validation split held out of the training
  signals (its prediction error after the last epoch); the test set is not
  looked at. Candidate `c` checkpoints to `workdir/candidate_name(c)`.
  """
  trained, diverged = {}, {}
  for optimizer, learning_rate in config.candidates:
    model = build()
    name = candidate_name(optimizer, learning_rate)
    try:
      history = _train(model, problem, config, num_epochs, optimizer,
                       learning_rate, os.path.join(workdir, name))
    except divergence.DivergedError as error:
      # A rate too large for this dictionary: it drops out of the choice
      # (its checkpoints hold only finite epochs, so a rerun diverges again
      # at the same step).
      logging.warning('%s diverged: %s', name, error)
      diverged[name] = {'epoch': error.epoch, 'step': error.step}
      continue
    trained[name] = model, history, optimizer, learning_rate
  if not trained:
    raise divergence.DivergedError(
        f'Every candidate diverged ({diverged}); give smaller learning '
        'rates.', *max(diverged.values(), key=lambda d: d['step']).values())
  final_error = lambda name: (
      trained[name][1][-1]['eval_metrics']['prediction_error']
      if trained[name][1] else np.inf)
  best = min(trained, key=final_error)
  by_optimizer = {}
  for name, (_, _, optimizer, _) in trained.items():
    if (optimizer not in by_optimizer or
        final_error(name) < final_error(by_optimizer[optimizer])):
      by_optimizer[optimizer] = name
  model, history, optimizer, learning_rate = trained[best]
  selection = {'optimizer': optimizer, 'learning_rate': learning_rate,
               'validation_error': {name: final_error(name)
                                    for name in trained},
               'by_optimizer': by_optimizer, 'diverged': diverged}
  return Trained(model, history, selection,
                 {optimizer: trained[name][0]
                  for optimizer, name in by_optimizer.items()})


def _encoding_speed(model: nnx.Module, x_test: np.ndarray,
                    dictionary: np.ndarray,
                    config: approximation.Config) -> dict[str, float]:
  """Seconds to code the whole test set: the encoder against 10 IHT steps."""
  model.eval()
  graphdef, state = nnx.split(model)
  # The parameters are closed over, as IHT closes over the dictionary:
  # flattening an `nnx.State` argument on every call would cost more host
  # time than the whole encoding on an accelerator.
  encode = jax.jit(lambda x: nnx.merge(graphdef, state)(x))
  x, dictionary = jnp.asarray(x_test), jnp.asarray(dictionary)
  step_size = 1 / solvers.lipschitz_constant(dictionary)
  iterations = max(config.iht_iterations)
  iht = jax.jit(lambda x: solvers.iht(
      x, dictionary, num_iterations=iterations, step_size=step_size,
      **config.problem_kwargs).codes)
  # Alternate the two, so that both see the same load on a shared machine.
  times = {'encoder': [], 'iht': []}
  for repeat in range(SPEED_REPEATS):
    for name, fn in (('encoder', encode), ('iht', iht)):
      times[name].append(reporting.time_call(lambda: fn(x), repeats=1,
                                             warmup=int(repeat == 0)))
  encoder_seconds = statistics.median(times['encoder'])
  iht_seconds = statistics.median(times['iht'])
  return {'num_signals': len(x_test), 'encoder_seconds': encoder_seconds,
          f'iht_{iterations}_seconds': iht_seconds,
          'speedup': iht_seconds / encoder_seconds}


def _epoch_seconds(model: nnx.Module, x_train: np.ndarray,
                   config: approximation.Config,
                   selection: dict[str, Any]) -> float:
  """Wall time of one training epoch of `model` on `x_train`, compiled.

  Trains two epochs and keeps the second (the first includes compilation).
  The targets are the model's own outputs: a step costs the same whatever
  the target values.
  """
  targets = train.predict(model, x_train)
  history = train.fit(
      model, x_train, targets, key=jax.random.PRNGKey(config.seed),
      **_fit_options(config, 2, _selected_optimizer(selection),
                     selection['learning_rate']), progress=False).history
  return history[-1].seconds


def _selected_optimizer(selection: dict[str, Any]) -> str:
  # Results written before SGD and Adam were both candidates used Adam only.
  return selection.get('optimizer', 'adam')


def _selected_name(selection: dict[str, Any]) -> str:
  """The checkpoint directory of the selected candidate."""
  if 'optimizer' not in selection:  # Written before the optimizer's name was.
    return f"lr{selection['learning_rate']:g}"
  return candidate_name(selection['optimizer'], selection['learning_rate'])


def benchmark_trained_encoder(workdir: str, dictionary_dir: str | None = None,
                              data_dir: str | None = None) -> dict[str, Any]:
  """Times a finished setting's encoders again, on this machine.

  Rebuilds the deep encoder of the setting in `workdir` (a finished `run`),
  loads the parameters of the chosen learning rate from its checkpoint and
  times it against 10 IHT iterations on the test signals, as `run` does;
  then times one training epoch of the deep and of the baseline encoder on
  the training signals (less the validation share). The signals and
  dictionary come from `workdir/problem.npz` if present, else as `run` made
  them (MNIST from `data_dir`, the dictionary cached in `dictionary_dir`).

  Returns:
    The speed record of `run` (signals, seconds of each, speed-up) with the
    epoch seconds of both encoders and the device.
  """
  results = reporting.read_json(os.path.join(workdir, RESULTS_FILE))
  config = approximation.config_from_json(results['config'],
                                          data_dir=data_dir)
  problem_path = os.path.join(workdir, 'problem.npz')
  if os.path.exists(problem_path):
    cached = validation.load_npz(problem_path, approximation.CACHE_REMEDY)
    x_train, x_test, dictionary = (cached['x_train'], cached['x_test'],
                                   cached['dictionary'])
  else:
    x_train, x_test, dictionary = approximation.load_signals(
        config, dictionary_dir)
  selection = results['learning_rate_selection']
  model = approximation.build_deep_encoder(dictionary, config)
  checkpoint.restore_model(
      os.path.join(workdir, 'deep', _selected_name(selection['deep'])), model)
  speed = _encoding_speed(model, x_test, dictionary, config)
  x_fit = x_train[int(len(x_train) * config.validation_fraction):]
  baseline = approximation.build_baseline_encoder(x_train.shape[1], config)
  return {**speed,
          'num_train_signals': len(x_fit),
          'deep_epoch_seconds': _epoch_seconds(model, x_fit, config,
                                               selection['deep']),
          'baseline_epoch_seconds': _epoch_seconds(
              baseline, x_fit, config, selection['baseline']),
          'device': jax.devices()[0].device_kind}


def run(config: approximation.Config, workdir: str,
        dictionary_dir: str | None = None, *,
        report_only: bool = False) -> dict[str, Any] | None:
  """Runs one setting end to end; returns (and writes) its results.

  Args:
    config: the setting.
    workdir: directory for the cached problem, checkpoints and results;
      a finished setting is read back from its `results.json` (where the
      data was read from, `data_dir`, does not count as a difference).
    dictionary_dir: where learned dictionaries are cached and shared between
      settings; None to learn each one afresh.
    report_only: compute nothing: return None for an unfinished setting.

  Returns:
    A JSON-able dict: the config, the table rows (test metrics of each
    method), the IHT curve, the training histories and the encoding speed;
    None for an unfinished setting with `report_only`.

  Raises:
    ValueError: `workdir` holds the results of another configuration.
  """
  return units.run_unit(
      workdir, approximation.config_to_json(config),
      lambda unit_dir: _compute(config, unit_dir, dictionary_dir),
      results_file=RESULTS_FILE, settings_key='config', ignore=('data_dir',),
      upgrade=approximation.upgrade_config, report_only=report_only)


def _compute(config: approximation.Config, workdir: str,
             dictionary_dir: str | None) -> dict[str, Any]:
  """The results of `run`, computed (resuming from `workdir`'s caches)."""
  problem = approximation.prepare_problem(config, workdir, dictionary_dir)
  iterations = max(config.iht_iterations)
  curve, normalized_curve = (
      approximation.iht_curve(problem.x_test, problem.dictionary,
                              problem.codes_test, config, iterations,
                              solver=solver)
      for solver in (solvers.iht, adaptive_solvers.normalized_iht))
  rows = {f'IHT ({k} iterations)': curve[k - 1] for k in config.iht_iterations}
  rows.update({f'Normalized IHT ({k} iterations)': normalized_curve[k - 1]
               for k in config.iht_iterations})

  test_metrics = lambda model: approximation.code_metrics(
      train.predict(model, problem.x_test), problem.codes_test)
  deep_name = approximation.DEEP_NAMES[config.problem]
  build_deep = lambda: approximation.build_deep_encoder(problem.dictionary,
                                                        config)
  baseline = train_with_selected_rate(
      lambda: approximation.build_baseline_encoder(
          problem.x_train.shape[1], config),
      problem, config, config.baseline_epochs,
      os.path.join(workdir, 'baseline'))
  untrained = test_metrics(build_deep())
  deep = train_with_selected_rate(build_deep, problem, config,
                                  config.num_epochs,
                                  os.path.join(workdir, 'deep'))
  rows['Baseline encoder'] = test_metrics(baseline.model)
  rows[deep_name] = test_metrics(deep.model)
  # Each optimizer's best candidate (by validation) on the test set, so
  # that the paper's SGD and Adam can be compared.
  rows_by_optimizer = {
      name: {optimizer: test_metrics(model)
             for optimizer, model in trained.best_of_optimizer.items()}
      for name, trained in (('Baseline encoder', baseline),
                            (deep_name, deep))}
  dictionary = jnp.asarray(problem.dictionary)
  return {
      # First, as results files have always held it (`run_unit` sets it).
      'config': None,
      'data': {'num_train': len(problem.x_train),
               'num_test': len(problem.x_test),
               'signal_dim': problem.x_train.shape[1],
               'mean_nonzeros_of_optimal_codes': float(np.mean(
                   np.count_nonzero(problem.codes_test, axis=1))),
               'dictionary_lipschitz': float(
                   solvers.lipschitz_constant(dictionary)),
               'dictionary_coherence': float(
                   dictionary_lib.mutual_coherence(dictionary))},
      'rows': rows,
      'rows_by_optimizer': rows_by_optimizer,
      'untrained_deep_encoder': untrained,
      'iht_curve': curve,
      'normalized_iht_curve': normalized_curve,
      'history': {'baseline': baseline.history, 'deep': deep.history},
      'learning_rate_selection': {'baseline': baseline.selection,
                                  'deep': deep.selection},
      'speed': _encoding_speed(deep.model, problem.x_test, problem.dictionary,
                               config),
      'device': jax.devices()[0].device_kind,
  }
