"""The clustering experiment (Tables 6-7 of the l0 paper).

`ClusteringConfig`: COIL-20, CMU PIE or a synthetic mixture. There is no
split: every signal is clustered, and labels only score the result. The head
starts as the soft nearest-centroid rule of k-means on the untrained
encoder's codes (`tasks.init_cluster_head`), then encoder and head are
trained with regularized information maximization
(`tasks.InformationMaximizationLoss` plus a weight decay on the head). The
references are k-means on the inputs and k-means on the l1 codes.
Hyperparameters are fixed in advance, not tuned on the labels; the
per-epoch clustering error is recorded for the learning curves only.
"""

import dataclasses
import functools
import os
from typing import Any, NamedTuple

import jax
import numpy as np

from l0enc import data as data_lib
from l0enc import metrics
from l0enc import tasks
from l0enc import train
from l0enc import validation
from l0enc.experiments import tasks_common

DATASETS = ('synthetic', 'coil20', 'pie')


@dataclasses.dataclass(frozen=True)
class ClusteringConfig(tasks_common.TaskConfig):
  """One data set of the clustering experiment (Tables 6-7).

  Attributes (besides `TaskConfig`'s):
    dataset: 'synthetic', 'coil20' or 'pie'.
    batch_size: larger than for classification: the loss estimates the
      cluster marginal on each batch, which needs several samples per
      cluster.
    head_weight_decay: the regularizer of regularized information
      maximization.
    marginal_weight: gamma of `tasks.information_maximization_loss`.
    kmeans_restarts: k-means++ restarts of every k-means.
    kmeans_iterations: Lloyd iterations of every k-means.
  """
  batch_size: int = 256
  head_weight_decay: float = 1e-4
  marginal_weight: float = 1.0
  kmeans_restarts: int = 10
  kmeans_iterations: int = 100

  _datasets = DATASETS

  def __post_init__(self):
    super().__post_init__()
    validation.check_nonnegative('marginal_weight', self.marginal_weight)
    validation.check_int_in_range('kmeans_restarts', self.kmeans_restarts, 1,
                                  10_000)
    validation.check_int_in_range('kmeans_iterations', self.kmeans_iterations,
                                  1, 100_000)


class ClusteringData(NamedTuple):
  """Standardized signals `(N, n)` and their int64 labels (for scoring)."""
  x: np.ndarray
  y: np.ndarray
  num_clusters: int
  description: str


def load_clustering_data(config: ClusteringConfig) -> ClusteringData:
  """The configured data set, every sample standardized (module doc)."""
  if config.dataset == 'synthetic':
    x, y = tasks_common.make_mixture(
        config.seed, config.num_synthetic, config.num_classes,
        config.signal_dim, config.synthetic_noise)
    description = (f'Gaussian mixture, {config.num_classes} clusters, n = '
                   f'{config.signal_dim}, noise {config.synthetic_noise}')
  else:
    loader = (data_lib.load_coil20 if config.dataset == 'coil20'
              else data_lib.load_pie)
    images = loader(config.data_path)
    x, y = tasks_common.standardize_rows(images.x), images.y
    description = (f'{len(x)} images flattened (n = {x.shape[1]}), zero mean '
                   'and unit variance per image')
  if config.whitening_epsilon is not None:
    # Clustering sees no label: all samples are its training split.
    x, note = tasks_common.whiten(config, x)
    description += note
  return ClusteringData(x, y, int(y.max() + 1), description)


def _clustering_scores(assignments: np.ndarray,
                       labels: np.ndarray) -> dict[str, float]:
  return {'error': float(metrics.clustering_error(assignments, labels)),
          'nmi': float(metrics.normalized_mutual_information(assignments,
                                                             labels)),
          'clusters_used': int(len(np.unique(assignments)))}


def _kmeans_scores(config: ClusteringConfig, x: np.ndarray,
                   task_data: ClusteringData, seed_offset: int
                   ) -> tuple[dict[str, float], tasks.KMeansResult]:
  result = tasks.kmeans(
      jax.random.fold_in(jax.random.PRNGKey(config.seed), seed_offset), x,
      task_data.num_clusters, num_iterations=config.kmeans_iterations,
      num_restarts=config.kmeans_restarts)
  return (_clustering_scores(np.asarray(result.assignments), task_data.y),
          result)


def _clustering_unit(config: ClusteringConfig, task_data: ClusteringData,
                     unit: tasks_common.Unit, workdir: str,
                     unit_dir: str) -> dict[str, Any]:
  dictionary = tasks_common.learned_dictionary(config, task_data.x,
                                              unit.code_dim, workdir)
  codes_path = os.path.join(workdir, f'l1_codes_p{unit.code_dim}.npz')
  if unit.encoder == 'kmeans_codes':
    codes = tasks_common.l1_codes(config, task_data.x, dictionary, codes_path)
    scores, _ = _kmeans_scores(config, codes, task_data, unit.code_dim)
    return {'row': unit.row, **scores}
  encoder = tasks_common.build_encoder(config, dictionary, unit.encoder, unit.m)
  pretrain_history = []
  if unit.encoder == 'lista':
    codes = tasks_common.l1_codes(config, task_data.x, dictionary, codes_path)
    pretrain_history = tasks_common.pretrain_lista(
        config, encoder, task_data.x, codes, task_data.x, codes,
        os.path.join(unit_dir, 'pretrain'))
  model = tasks.TaskModel(encoder, task_data.num_clusters)
  initial_codes = train.predict(encoder, task_data.x)
  initial, start = _kmeans_scores(config, initial_codes, task_data,
                                  unit.code_dim + 1)
  temperature = max(float(start.inertia) / len(task_data.x), 1e-6)
  tasks.init_cluster_head(model, start.centroids, temperature)
  fit = train.fit(
      model, task_data.x, np.zeros(len(task_data.x), np.int32),
      key=jax.random.PRNGKey(config.seed + 1),
      config=tasks_common.train_config(config, config.num_epochs),
      tx=tasks_common.transformation(config.optimizer, config.learning_rate,
                                     config.clip_norm,
                                     config.head_weight_decay),
      loss_fn=tasks.InformationMaximizationLoss(config.marginal_weight),
      # The labels score the clustering after each epoch (learning curves);
      # the loss ignores them.
      metric_fn=tasks.clustering_metrics, x_eval=task_data.x,
      y_eval=task_data.y, workdir=os.path.join(unit_dir, 'train'),
      progress=False)
  logits = train.predict(model, task_data.x)
  scores = _clustering_scores(np.argmax(logits, axis=-1), task_data.y)
  return {'row': unit.row, **scores,
          'initial_mean_code_nonzeros': tasks_common.mean_nonzeros(
              initial_codes),
          'mean_code_nonzeros': tasks_common.mean_nonzeros(
              train.predict(tasks.Encoded(model), task_data.x)),
          'initial_kmeans': initial, 'temperature': temperature,
          'history': tasks_common.history_dicts(fit),
          'pretrain_history': pretrain_history}


def run(config: ClusteringConfig, workdir: str,
        report_only: bool = False) -> dict[str, Any]:
  """Runs one data set; returns and writes its results.

  Args:
    config: the data set's settings.
    workdir: the data set's directory (as for `classification.run`).
    report_only: compute nothing, report the units already finished (as for
      `classification.run`).

  Returns:
    A JSON-able dict: the config, the data, and per unit name its result
    (error, NMI, clusters used, the initial k-means, training history).
  """
  if not isinstance(config, ClusteringConfig):
    raise TypeError('config must be a ClusteringConfig, got '
                    f'{type(config).__name__}.')
  os.makedirs(workdir, exist_ok=True)
  tasks_common.check_settings(config, workdir)
  task_data = load_clustering_data(config)
  input_unit = tasks_common.Unit('kmeans_input', 0)
  units = {input_unit.name: tasks_common.run_task_unit(
      workdir, input_unit, lambda _: {
          'row': input_unit.row,
          **_kmeans_scores(config, task_data.x, task_data, 0)[0]},
      report_only)}
  references = [tasks_common.Unit('kmeans_codes', code_dim)
                for code_dim in config.code_dims]
  for unit in references + config.units():
    units[unit.name] = tasks_common.run_task_unit(
        workdir, unit, functools.partial(
            _clustering_unit, config, task_data, unit, workdir),
        report_only)
  data_summary = {'description': task_data.description,
                  'signal_dim': int(task_data.x.shape[1]),
                  'num_classes': task_data.num_clusters,
                  'num_samples': len(task_data.x)}
  return tasks_common.write_results(config, workdir, 'clustering',
                                    data_summary, units, report_only)
