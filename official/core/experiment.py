"""One training run: prepare (validate, build, restore), fit, evaluate, export."""
import dataclasses
import json
import os
import sys

import keras
import tensorflow as tf
from absl import logging

from official.attacks import pgd
from official.common import checks
from official.core import averaging
from official.core import callbacks
from official.core import cluster
from official.core import export as export_lib
from official.core import hparams
from official.core import precision
from official.core import selection
from official.core import trainer as trainer_lib
from official.core import workdir as workdir_lib
from official.data import registry as data_registry
from official.evaluation import checks as eval_checks
from official.evaluation import margins as margins_lib
from official.evaluation import reports
from official.evaluation import robustness
from official.evaluation import tail_examples
from official.evaluation import validation as validation_lib
from official.modeling import custom
from official.modeling import objectives
from official.modeling import registry as model_registry
from official.reweighting import base as method_base
from official.reweighting import registry as method_registry

DISTRIBUTE = ("default", "mirrored", "multi_worker")
XLA = ("auto", "on", "off")


@dataclasses.dataclass
class Run:
  config: object
  workdir: str
  strategy: object
  data: object
  trainer: trainer_lib.AdversarialTrainer
  checkpointer: callbacks.Checkpointer
  initial_epoch: int
  # What eval.json records under "weights" (set by evaluated_weights).
  weights: dict = None


def use_xla(setting):
  """`auto`: XLA on GPUs only. Measured on the 2-core CPU (README benchmark),
  XLA made the PGD loop slower than graph mode, so CPUs run without it."""
  checks.check_choice("xla", setting, XLA)
  if setting == "auto":
    return bool(tf.config.list_physical_devices("GPU"))
  return setting == "on"


_MIRRORED = []


def make_strategy(name):
  """`mirrored`: every local GPU, else every logical CPU device.
  `multi_worker`: the TF_CONFIG cluster (official/core/cluster.py).

  One MirroredStrategy per process: a second instance reuses collective
  instance keys of the first and its all-reduces fail with shape mismatches.
  """
  checks.check_choice("distribute", name, DISTRIBUTE)
  if name == "multi_worker":
    return cluster.make_strategy()
  if name == "mirrored":
    if not _MIRRORED:
      gpus = tf.config.list_logical_devices("GPU")
      devices = [d.name for d in gpus] or [
          d.name for d in tf.config.list_logical_devices("CPU")]
      _MIRRORED.append(tf.distribute.MirroredStrategy(devices))
    return _MIRRORED[0]
  return tf.distribute.get_strategy()


def training_attack(config, objective):
  a = config.attack
  start = objective.random_start if a.random_start == "default" else a.random_start
  return pgd.AttackSpec(name=f"train_pgd_{objective.attack_loss}",
                        loss=objective.attack_loss, epsilon=float(a.epsilon),
                        step_size=float(a.step_size), steps=int(a.steps),
                        random_start=start)


def training_attacks(config, data):
  """The AttackSpecs a run with this config trains with, primary first."""
  objective = objectives.get_objective(config.objective.name)
  method = method_registry.build_method(config.reweighting, config=config,
                                        data=data)
  return (training_attack(config, objective), *method.extra_attacks)


SCHEDULES = ("piecewise", "onecycle")


class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
  """PyTorch's OneCycleLR (two phases, cosine annealing) as WEAT uses it:
  from max_lr/div to max_lr over the first pct of the steps, then down to
  max_lr/(div·final_div). Momentum cycling is not reproduced."""

  def __init__(self, max_lr, total_steps, pct_start=0.25, div_factor=25.0,
               final_div_factor=1e4):
    self.max_lr = float(max_lr)
    self.total_steps = int(total_steps)
    self.pct_start = float(pct_start)
    self.div_factor = float(div_factor)
    self.final_div_factor = float(final_div_factor)

  def __call__(self, step):
    # torch: the warm-up ends at step pct·total − 1, the annealing at total − 1.
    step = tf.cast(step, tf.float32)
    up_end = self.pct_start * self.total_steps - 1.0
    down_end = self.total_steps - 1.0
    initial = self.max_lr / self.div_factor
    final = initial / self.final_div_factor

    def cosine(start, end, fraction):
      fraction = tf.clip_by_value(fraction, 0.0, 1.0)
      return end + (start - end) / 2.0 * (1.0 + tf.cos(3.141592653589793 * fraction))

    return tf.where(step <= up_end,
                    cosine(initial, self.max_lr, step / up_end),
                    cosine(self.max_lr, final,
                           (step - up_end) / (down_end - up_end)))

  def get_config(self):
    return {"max_lr": self.max_lr, "total_steps": self.total_steps,
            "pct_start": self.pct_start, "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor}


def learning_rate(opt_cfg, steps_per_epoch, epochs=None):
  """The rate schedule: piecewise constant (lr_boundaries, lr_decay) or
  `schedule: onecycle` over the run's epochs (pct_start 0.25, WEAT's)."""
  schedule = checks.check_choice("optimizer.schedule",
                                 opt_cfg.get("schedule", "piecewise"), SCHEDULES)
  if schedule == "onecycle":
    return OneCycle(opt_cfg.learning_rate, int(epochs) * steps_per_epoch,
                    pct_start=float(opt_cfg.get("onecycle_pct_start", 0.25)))
  boundaries = [int(b) * steps_per_epoch for b in opt_cfg.lr_boundaries]
  if not boundaries:
    return float(opt_cfg.learning_rate)
  values = [float(opt_cfg.learning_rate) * float(opt_cfg.lr_decay)**i
            for i in range(len(boundaries) + 1)]
  return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def resolve(config):
  """Fills derived values that follow other keys (so they follow overrides)."""
  if config.eval.epsilon is None:
    config.eval.epsilon = float(config.attack.epsilon)
  if config.eval.get("train_step_size", 0.0) is None:
    config.eval.train_step_size = float(config.attack.step_size)
  # Long-tailed training data: head/tail accuracy for every method.
  if (config.data.imbalance.profile != "none"
      and "groups" not in config.eval.reports):
    config.eval.reports = tuple(config.eval.reports) + ("groups",)
  # model.name=custom: the builder's absolute path and file hash (identity).
  config.model = custom.resolve(config.model)
  return config


def validate(config):
  """Checks that need no data or model; raises one-line ValueErrors."""
  resolve(config)
  for key in ("epochs", "batch_size"):
    if int(config[key]) <= 0:
      raise ValueError(f"{key} must be positive, got {config[key]}")
  checks.check_choice("distribute", config.distribute, DISTRIBUTE)
  checks.check_choice("xla", config.xla, XLA)
  precision.check(config.get("precision", "float32"))
  averaging.check(config)
  checks.check_choice("optimizer.schedule",
                      config.optimizer.get("schedule", "piecewise"), SCHEDULES)
  objectives.check_label_smoothing(config.objective)
  objective = objectives.get_objective(config.objective.name)
  method_registry.check_name(config.reweighting.name)
  for key in ("epsilon",):
    value = float(config.attack[key])
    if not 0.0 < value <= 1.0:
      raise ValueError(f"attack.epsilon must be in (0, 1], got {value}")
  if not 0.0 < float(config.eval.epsilon) <= 1.0:
    raise ValueError(f"eval.epsilon must be in (0, 1], got {config.eval.epsilon}")
  tail = float(config.eval.get("tail_fraction", 0.3))
  if not 0.0 < tail <= 1.0:
    raise ValueError(f"eval.tail_fraction must be in (0, 1], got {tail}")
  robustness.attack_specs(config.eval)
  selection.check(config)  # eval.select; a validation split where needed
  reports.check_names(config.eval.reports)
  if "tail_examples" in config.eval.reports:  # its reference must exist now
    tail_examples.check(config.eval)
  return objective, training_attack(config, objective)


def prepare(config, workdir, allow_changes=()):
  """Validates the config and builds everything.

  Writes nothing until the config and data are known to be good, then claims
  the workdir (`workdir.claim`: lock, same config and data as its
  checkpoints, except SAFE_KEYS and `allow_changes`) before restoring.
  """
  objective, attack = validate(config)
  strategy = make_strategy(config.distribute)
  replicas = strategy.num_replicas_in_sync
  if config.batch_size % replicas:
    raise ValueError(f"batch_size {config.batch_size} is not divisible by the "
                     f"{replicas} replicas of distribute={config.distribute}")
  keras.utils.set_random_seed(int(config.seed))
  say(f"Loading data: {config.data.name}")
  data = data_registry.load(config.data, batch_size=int(config.batch_size),
                            seed=int(config.seed))
  logging.info("Training examples per class: %s", data.class_counts.tolist())
  if int((data.class_counts > 0).sum()) < 2:
    logging.warning("the training data has a single class (counts %s): the "
                    "model can only learn to predict it",
                    data.class_counts.tolist())
  resolved = json.loads(config.to_json_best_effort())
  fingerprint = workdir_lib.data_fingerprint(data)
  # Multi-worker: only the chief owns (locks, checks, writes) the workdir.
  chief = cluster.is_chief(config.distribute)
  created = chief and workdir_lib.claim(workdir, resolved, fingerprint,
                                        allow_changes)
  # The dtype policy must be set before any layer is built (process-global).
  precision.set_policy(config.get("precision", "float32"))
  try:
    say(f"Building {config.model.name}, objective {config.objective.name}, "
        f"method {config.reweighting.name}")
    with strategy.scope():
      network = build_network(config, data)
      method = method_registry.build_method(config.reweighting, config=config,
                                            data=data)
      custom.check_features(network, method)  # a custom model without them
      trainer = trainer_lib.AdversarialTrainer(
          network, objective=objective,
          coefficients=objective.coefficients(config.objective),
          label_smoothing=float(config.objective.get("label_smoothing", 0.0)),
          train_attack=attack, method=method,
          steps_per_epoch=data.steps_per_epoch,
          weight_decay=float(config.optimizer.weight_decay),
          seed=int(config.seed), jit_compile=use_xla(config.xla),
          epsilon_warmup_epochs=int(
              config.attack.get("epsilon_warmup_epochs", 0)))
      trainer.averager = averaging.build(config, network)
      optimizer = keras.optimizers.SGD(
          learning_rate=learning_rate(config.optimizer, data.steps_per_epoch,
                                      int(config.epochs)),
          momentum=float(config.optimizer.momentum),
          nesterov=bool(config.optimizer.nesterov))
      optimizer = precision.wrap_optimizer(optimizer,
                                           config.get("precision", "float32"))
      # Never compile(jit_compile=True) under a strategy: XLA is on PGD only.
      trainer.compile(optimizer=optimizer, jit_compile=False)
      # Multi-worker: every worker restores the chief's checkpoints.
      checkpointer = cluster.checkpointer(
          config.distribute, os.path.join(workdir, "checkpoints"), trainer,
          keep=int(config.checkpoints_to_keep))
      initial_epoch = checkpointer.restore_latest()
    if chief:
      selection.check_record(config, workdir, initial_epoch)
      _write_run_files(resolved, workdir, fingerprint)
  except BaseException:
    if chief:
      workdir_lib.release(workdir, remove_if_empty=created)
    raise
  if initial_epoch:
    say(f"Resuming {workdir} from epoch {initial_epoch}")
  return Run(config, workdir, strategy, data, trainer, checkpointer,
             initial_epoch)


def say(message):
  """What the run is doing, on stdout (absl INFO is off by default)."""
  print(message, flush=True)


def build_network(config, data):
  """The network, or one error line when the images are too small for it."""
  try:
    return model_registry.build_model(config.model, data.image_shape,
                                      data.num_classes, seed=int(config.seed))
  except ValueError as e:
    h, w = data.image_shape[:2]
    if min(h, w) >= 32 or config.model.name == custom.NAME:
      raise
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise ValueError(f"images of {h}x{w} pixels are too small for "
                     f"model.name={config.model.name}: its convolutions and "
                     f"pooling shrink them below one pixel ({first})") from None


def _write_run_files(resolved, workdir, fingerprint):
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, "config.json")
  if os.path.exists(path):
    try:
      previous = workdir_lib.read_json(path)
    except ValueError:
      previous = None  # no checkpoints (else claim() had refused): replaced
    if previous != resolved:
      changed = (workdir_lib.config_changes(previous, resolved)
                 if previous is not None else ["unreadable"])
      say(f"Config changed since the last run ({', '.join(changed)}); the old "
          "one is kept as config.previous.json")
      os.replace(path, os.path.join(workdir, "config.previous.json"))
  with open(path, "w") as f:
    json.dump(resolved, f, indent=2, sort_keys=True)
  with open(os.path.join(workdir, "data.json"), "w") as f:
    json.dump(fingerprint, f, indent=2)


def _fit(run):
  """Trains from run.initial_epoch to config.epochs; returns config.epochs."""
  config, workdir, trainer = run.config, run.workdir, run.trainer
  epochs = int(config.epochs)
  if run.initial_epoch >= epochs:
    return epochs
  chief = cluster.is_chief(config.distribute)
  say(f"Training epochs {run.initial_epoch + 1}-{epochs} "
      f"({run.data.steps_per_epoch} steps each); the first step traces and "
      "compiles the training attack")
  hooks = epoch_context(run)
  trainer.fit(
      cluster.train_dataset(run.strategy, run.data, run.initial_epoch, epochs),
      epochs=epochs, initial_epoch=run.initial_epoch, shuffle=False,
      steps_per_epoch=run.data.steps_per_epoch,
      verbose=0,  # callbacks.Progress instead of Keras's bar
      callbacks=[
          callbacks.Progress(epochs, run.data.steps_per_epoch,
                             live=sys.stdout.isatty()),
          callbacks.MethodEpochHooks(trainer.method, hooks),
      ] + ([averaging.AveragingCallback(trainer.averager, trainer.method)]
           if trainer.averager is not None else []) + [
          callbacks.CheckpointCallback(run.checkpointer),
      ] + ([  # other workers write no summaries
          # after the checkpoint
          *selection.callbacks(run, hooks.validation,
                               lambda: build_network(run.config, run.data)),
          callbacks.TensorBoard(os.path.join(workdir, "tb")),
          callbacks.EpochSummaries(trainer, os.path.join(workdir, "tb"),
                                   run.data.train_ids),
      ] if chief else []))
  return epochs


def epoch_context(run):
  """What the method's epoch hooks see (reweighting/base.py: EpochContext)."""
  validation = None
  if len(run.data.validation_ids):
    # Mirrored: batches split over the replicas; multi-worker: each worker
    # evaluates alone (same weights and seeds: the same numbers everywhere).
    validation = validation_lib.Validator(
        run.trainer.network, run.data, seed=int(run.config.seed),
        jit_compile=use_xla(run.config.xla),
        strategy=run.strategy if run.config.distribute == "mirrored" else None,
        inference_logits=run.trainer.method.inference_logits)
  return method_base.EpochContext(
      network=run.trainer.network, data=run.data, config=run.config,
      strategy=run.strategy, seed=int(run.config.seed),
      jit_compile=use_xla(run.config.xla), validation=validation)


def train_and_evaluate(run):
  """Fit, then export, then eval.json, then DIR/done.json (written last).

  Holds the workdir's lock throughout and releases it on any exit. Stale
  temp folders of a killed save are removed first. NaN/inf weights stop the
  run (callbacks.NonFiniteError) before any checkpoint, export or eval.json.
  """
  config, workdir, trainer = run.config, run.workdir, run.trainer
  chief = cluster.is_chief(config.distribute)
  if not chief:  # other workers train (and save to scratch) only
    _fit(run)
    return None
  try:
    for path in workdir_lib.clean_stale(workdir):
      logging.warning("removed %s, left by an interrupted save", path)
    workdir_lib.unmark_done(workdir)
    epochs = _fit(run)
    run.checkpointer.check_finite(f"(weights after epoch {epochs})")
    run.weights = evaluated_weights(run)
    trainer.method.save_artifacts(workdir)
    selected = selection.select(run, epochs)  # eval.select: loads the weights
    say(f"Exporting the network to {os.path.join(workdir, 'export')}")
    export_lib.export(trainer.network, os.path.join(workdir, "export"),
                      trainer.method.inference_logits)
    results = evaluate(run, selected)
    workdir_lib.mark_done(workdir, {
        "epochs": epochs,
        "accuracy": {name: results[name]["accuracy"]
                     for name in config.eval.attacks if name in results},
        "warnings": [found["message"] for found in results["checks"].values()
                     if not found["ok"]],
        "artifacts": artifacts(workdir)})
  finally:
    workdir_lib.release(workdir)
  return results


def evaluated_weights(run):
  """Puts the weights to export and evaluate into the network (the average
  of config.averaging, if any) and returns what eval.json says of them."""
  averager = run.trainer.averager
  if averager is None:
    return {"averaging": "none", "evaluated": "last"}
  say(f"Using the {averager.mode.upper()} average of the weights "
      "(config.averaging) for export and evaluation")
  info = averager.apply_to(run.trainer.network, run.data.train(0, 1))
  if info["epochs_averaged"] == 0:
    logging.warning("averaging=%s: no epoch was averaged; exporting and "
                    "evaluating the last weights", averager.mode)
  return info


def artifacts(workdir):
  """{what: path} of a finished run's outputs that exist."""
  found = {"eval": "eval.json", "export": "export", "tensorboard": "tb",
           "checkpoints": "checkpoints", "config": "config.json",
           "margins": "margins.npz"}
  out = {k: os.path.join(workdir, v) for k, v in found.items()
         if os.path.exists(os.path.join(workdir, v))}
  names = sorted(os.listdir(workdir))
  own = {"eval.json", "config.json", "config.previous.json", "data.json",
         workdir_lib.DONE}
  for key, found in (("plots", [n for n in names if n.endswith((".png", ".pdf"))]),
                     ("reports", [n for n in names if n.endswith(".json")
                                  and n not in own])):
    if found:
      out[key] = [os.path.join(workdir, n) for n in found]
  return out


def tensorboard_command(logdir):
  """The venv's tensorboard (a bare `tensorboard` may not be on PATH)."""
  binary = os.path.join(os.path.dirname(sys.executable), "tensorboard")
  if os.path.exists(binary):
    return f"{binary} --logdir {logdir}"
  return f"{sys.executable} -m tensorboard.main --logdir {logdir}"


def summary(run, results):
  """The end-of-run text: headline accuracies and where everything went."""
  lines = [f"Done: {run.workdir} ({int(run.config.epochs)} epochs)"]
  for name in run.config.eval.attacks:
    if name in results:
      r = results[name]
      lines.append(f"  {name:<8} accuracy {r['accuracy']:.4f}  worst class "
                   f"{r['worst_class']:.4f}")
  for found in results.get("checks", {}).values():
    if not found["ok"]:
      lines.append(f"  warning: {found['message']}")
  for what, path in artifacts(run.workdir).items():
    shown = ", ".join(path) if isinstance(path, list) else path
    lines.append(f"  {what + ':':<12} {shown}")
  lines.append("  view:        " + tensorboard_command(
      os.path.join(run.workdir, "tb")))
  return "\n".join(lines)


def deployed_logits_fn(run):
  """images -> the deployed logits (eval mode): the function the export
  serves (core/export.py), the method's inference_logits on the network's."""
  model = model_registry.logits_model(run.trainer.network,
                                      run.trainer.method.inference_logits)
  return lambda x: model(x, training=False)  # noqa: E731


def evaluate(run, selected=None):
  """eval.json: the attacks, the reports and `selected` (eval.select)."""
  config = run.config
  say(f"Evaluating on the test split: {', '.join(config.eval.attacks)}")
  logits_fn = deployed_logits_fn(run)
  results = robustness.evaluate(
      logits_fn, run.data.test(), config.eval, run.data.num_classes,
      seed=int(config.seed), jit_compile=use_xla(config.xla),
      verbose=1 if sys.stdout.isatty() else 0,
      # Mirrored: each batch split over the replicas (equal to 1 device).
      # Multi-worker: the chief evaluates alone, so no collectives here.
      strategy=run.strategy if config.distribute == "mirrored" else None,
      keep_margins=True)
  # Per-example logit margins: DIR/margins.npz, margins.png, TensorBoard.
  margin_values = margins_lib.pop_values(results)
  if margin_values:
    labels = run.data.splits.y_test[:len(next(iter(margin_values.values())))]
    margins_lib.save(margin_values, labels, run.workdir)
    margins_lib.write_summaries(margin_values,
                                os.path.join(run.workdir, "tb", "eval"))
  results.update(reports.run_reports(config.eval.reports, reports.ReportContext(
      logits_fn=logits_fn, data=run.data, config=config, workdir=run.workdir,
      results=dict(results), seed=int(config.seed),
      jit_compile=use_xla(config.xla),
      training_attacks=(run.trainer.train_attack,
                        *run.trainer.method.extra_attacks))))
  # A network that predicts one class everywhere (never learned, or
  # collapsed) scores that class's share under every attack: say so loudly,
  # in eval.json and done.json (tools.protocol marks such runs).
  first = next(iter(run.data.test()))
  results["checks"] = {"collapse": eval_checks.collapse(
      logits_fn, first["image"], first["label"])}
  for name, found in results["checks"].items():
    if not found["ok"]:
      say(f"warning: {found['message']}")
  # Which weights these are (last, or an average: core/averaging.py).
  results["weights"] = getattr(run, "weights", None) or {
      "averaging": "none", "evaluated": "last"}
  if selected is not None:  # eval.select (core/selection.py)
    results["selection"] = selected
  path = os.path.join(run.workdir, "eval.json")
  with open(path + ".tmp", "w") as f:
    json.dump(results, f, indent=2)
  os.replace(path + ".tmp", path)
  robustness.write_summaries(results, os.path.join(run.workdir, "tb", "eval"))
  hparams.write_run(run.workdir, results)  # the HParams dashboard's row
  for name in config.eval.attacks:
    r = results[name]
    logging.info("%-8s accuracy %.4f  worst class %.4f", name, r["accuracy"],
                 r["worst_class"])
  return results
