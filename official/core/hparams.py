"""A run's hyperparameters and final metrics as TensorBoard HParams summaries.

`tensorboard --logdir ROOT` (e.g. runs/protocol_hard) then lists every run
below ROOT in the HParams dashboard: one row per run in its table, one line
per run in the parallel-coordinates view, filtered and sorted by any config
key or metric.

Per run, DIR/tb/hparams holds (written after eval.json by the run itself,
or by `python -m tools.hparams --root=ROOT` for runs that predate it):
  - the session: `hparams(values, trial_id=<workdir name>)`, values = the
    flattened recorded config DIR/config.json (workdir.flatten keys, e.g.
    `reweighting.lam`; tuples, None and inf as text);
  - the metrics: scalars at step = epochs, tags `eval/<attack>/accuracy` and
    `eval/<attack>/worst_class` (the tags of DIR/tb/eval) for every attack of
    DIR/eval.json, plus the AutoAttack-family results `tools.evaluate` wrote
    beside it (DIR/autoattack.json, DIR/autoattack-fast.json, ...).
The dashboard reads a session's metrics from its own directory and the ones
below it: DIR/tb/hparams holds only these scalars, so the metric columns are
exactly them (a session in DIR/tb would also list every training curve).

No run writes an experiment summary (`hparams_config`): TensorBoard uses the
first one it finds for every run under the logdir, so one run's would hide
the keys and metrics the others have and it lacks (another method's
reweighting.*, AutoAttack columns of some runs only). Without one, it infers
the experiment from the sessions: the union of their keys and metrics. For a
tidier table, `tools.hparams --root=ROOT --experiment` writes one at ROOT
(`write_experiment`) for the runs found there: every key that differs between
them (listed and shown first) plus IDENTITY_KEYS, and the metrics with
readable names; rerun it after adding runs (a run it does not list still has
its row, but only the columns it names are shown).
"""
import glob
import json
import math
import os

import tensorflow as tf
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.plugins.hparams import api as hp
from tensorboard.plugins.hparams import metadata as hp_metadata
from tensorboard.plugins.hparams import plugin_data_pb2

from official.core import workdir as workdir_lib

SUBDIR = os.path.join("tb", "hparams")
METRIC_FIELDS = ("accuracy", "worst_class")
# Listed by write_experiment even when every run has the same value (what
# names a run of the protocol); other keys only when they differ.
IDENTITY_KEYS = ("objective.name", "reweighting.name", "seed")
# The AutoAttack-family reports tools.evaluate writes beside eval.json.
_REPORTS = ("autoattack", "autoattack-fast", "apgd-ce", "apgd-dlr", "apgd-t",
            "fab-t", "square")
_EXPERIMENT_SUFFIX = ".hparams_experiment"


def hparam_values(config_dict):
  """{flattened key: bool | int | float | str} of a recorded config."""
  out = {}
  for key, value in workdir_lib.flatten(config_dict).items():
    if isinstance(value, bool) or isinstance(value, str):
      out[key] = value
    elif isinstance(value, (int, float)) and math.isfinite(value):
      out[key] = value
    elif isinstance(value, float):  # inf / nan (GAIRAT's lam=inf = plain AT)
      out[key] = str(value)
    else:  # None, tuples, {}
      out[key] = json.dumps(value)
  return out


def final_metrics(workdir, results=None):
  """{tag: value}: accuracy and worst class of every attack of eval.json
  (or `results`), then of the AutoAttack reports beside it."""
  if results is None:
    results = workdir_lib.read_json(os.path.join(workdir, "eval.json"))
  results = dict(results)
  for name in _REPORTS:
    path = os.path.join(workdir, f"{name}.json")
    if name not in results and os.path.exists(path):
      report = workdir_lib.read_json(path)
      if isinstance(report.get(name), dict):
        results[name] = report[name]
  metrics = {}
  for attack, summary in results.items():
    if not isinstance(summary, dict) or "per_class" not in summary:
      continue  # a report (cross_attack, eps_curve, ...), not an attack
    for field in METRIC_FIELDS:
      value = summary.get(field)
      if isinstance(value, (int, float)) and math.isfinite(value):
        metrics[f"eval/{attack}/{field}"] = float(value)
  return metrics


def write_run(workdir, results=None):
  """(Re)writes DIR/tb/hparams from DIR/config.json and the final metrics.

  Returns (values, metrics). Earlier event files there are replaced, so a
  rewrite leaves one session.
  """
  config = workdir_lib.read_json(os.path.join(workdir, "config.json"))
  values = hparam_values(config)
  metrics = final_metrics(workdir, results)
  logdir = os.path.join(workdir, SUBDIR)
  for path in glob.glob(os.path.join(logdir, "events.out.tfevents.*")):
    os.remove(path)
  step = int(config.get("epochs", 0) or 0)
  writer = tf.summary.create_file_writer(logdir)
  with writer.as_default():
    hp.hparams(values, trial_id=os.path.basename(os.path.abspath(workdir)))
    for tag, value in metrics.items():
      tf.summary.scalar(tag, value, step=step)
  writer.close()
  return values, metrics


def metric_display_name(tag):
  """eval/pgd20/worst_class -> 'pgd20 worst class'."""
  _, attack, field = tag.split("/", 2)
  return f"{attack} {field.replace('_', ' ')}"


def write_experiment(root, runs):
  """The experiment summary (hparams_config) at `root` for `runs`:
  {workdir: (values, metrics)}. Replaces an earlier one written here.

  Keys: those whose values differ between the runs that have them (marked
  `differs`: the dashboard lists, and shows by default, those first), then
  IDENTITY_KEYS. Returns (keys, metric tags).
  """
  for path in glob.glob(os.path.join(root, f"events.out.tfevents.*"
                                           f"{_EXPERIMENT_SUFFIX}")):
    os.remove(path)
  seen = {}
  for values, _ in runs.values():
    for key, value in values.items():
      seen.setdefault(key, []).append(value)
  differing = {k for k, v in seen.items()
               if len({json.dumps(x) for x in v}) > 1}
  keys = sorted(k for k in seen if k in differing or k in IDENTITY_KEYS)
  hparams = []
  for key in keys:
    values = seen[key]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool)
           for v in values):
      domain = hp.RealInterval(float(min(values)), float(max(values)))
    elif all(isinstance(v, bool) for v in values):
      domain = hp.Discrete(sorted(set(values)))
    else:  # mixed types are shown as text, as TensorBoard infers them
      domain = hp.Discrete(sorted({str(v) for v in values}))
    hparams.append(hp.HParam(key, domain))
  tags = []  # in eval.attacks order (natural first), as the runs list them
  for _, metrics in runs.values():
    tags += [t for t in metrics if t not in tags]
  metrics = [hp.Metric(t, display_name=metric_display_name(t)) for t in tags]
  pb = hp.hparams_config_pb(hparams=hparams, metrics=metrics)
  plugin = pb.value[0].metadata.plugin_data
  data = plugin_data_pb2.HParamsPluginData.FromString(plugin.content)
  for info in data.experiment.hparam_infos:
    info.differs = info.name in differing
  plugin.content = data.SerializeToString()
  writer = tf.summary.create_file_writer(root,
                                         filename_suffix=_EXPERIMENT_SUFFIX)
  with writer.as_default():
    tf.summary.experimental.write_raw_pb(pb.SerializeToString(), step=0)
  writer.close()
  return keys, tags


def read(logdir):
  """What a run's DIR/tb/hparams (or a root's experiment) holds, read back
  from the event files: {"hparams": {key: value}, "trial_id": str,
  "metrics": {tag: value}, "experiment": {"hparams": [...], "metrics": [...]}}.
  """
  out = {"hparams": {}, "trial_id": None, "metrics": {}, "experiment": None}
  for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
    for event in event_file_loader.EventFileLoader(path).Load():
      for value in event.summary.value:
        plugin = value.metadata.plugin_data
        if plugin.plugin_name == hp_metadata.PLUGIN_NAME:
          if value.tag == hp_metadata.SESSION_START_INFO_TAG:
            info = hp_metadata.parse_session_start_info_plugin_data(
                plugin.content)
            out["trial_id"] = info.group_name
            out["hparams"] = {k: _from_proto(v)
                              for k, v in info.hparams.items()}
          elif value.tag == hp_metadata.EXPERIMENT_TAG:
            experiment = hp_metadata.parse_experiment_plugin_data(
                plugin.content)
            out["experiment"] = {
                "hparams": [h.name for h in experiment.hparam_infos],
                "differs": [h.name for h in experiment.hparam_infos
                            if h.differs],
                "metrics": [m.name.tag for m in experiment.metric_infos]}
        elif value.HasField("tensor"):
          out["metrics"][value.tag] = float(tf.make_ndarray(value.tensor))
  return out


def _from_proto(value):
  kind = value.WhichOneof("kind")
  return {"number_value": value.number_value, "string_value":
          value.string_value, "bool_value": value.bool_value}.get(kind)
