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
from official.core import callbacks
from official.core import export as export_lib
from official.core import precision
from official.core import trainer as trainer_lib
from official.data import registry as data_registry
from official.evaluation import reports
from official.evaluation import robustness
from official.evaluation import tail_examples
from official.modeling import objectives
from official.modeling import registry as model_registry
from official.reweighting import registry as method_registry

DISTRIBUTE = ("default", "mirrored")
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

  One MirroredStrategy per process: a second instance reuses collective
  instance keys of the first and its all-reduces fail with shape mismatches.
  """
  checks.check_choice("distribute", name, DISTRIBUTE)
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


def learning_rate(opt_cfg, steps_per_epoch):
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
  objective = objectives.get_objective(config.objective.name)
  method_registry.check_name(config.reweighting.name)
  for key in ("epsilon",):
    value = float(config.attack[key])
    if not 0.0 < value <= 1.0:
      raise ValueError(f"attack.epsilon must be in (0, 1], got {value}")
  if not 0.0 < float(config.eval.epsilon) <= 1.0:
    raise ValueError(f"eval.epsilon must be in (0, 1], got {config.eval.epsilon}")
  robustness.attack_specs(config.eval)
  reports.check_names(config.eval.reports)
  if "tail_examples" in config.eval.reports:  # its reference must exist now
    tail_examples.check(config.eval)
  return objective, training_attack(config, objective)


def prepare(config, workdir):
  """Validates the config and builds everything; writes nothing before the end."""
  objective, attack = validate(config)
  strategy = make_strategy(config.distribute)
  replicas = strategy.num_replicas_in_sync
  if config.batch_size % replicas:
    raise ValueError(f"batch_size {config.batch_size} is not divisible by the "
                     f"{replicas} replicas of distribute={config.distribute}")
  keras.utils.set_random_seed(int(config.seed))
  data = data_registry.load(config.data, batch_size=int(config.batch_size),
                            seed=int(config.seed))
  logging.info("Training examples per class: %s", data.class_counts.tolist())
  # The dtype policy must be set before any layer is built (process-global).
  precision.set_policy(config.get("precision", "float32"))
  with strategy.scope():
    network = model_registry.build_model(config.model, data.image_shape,
                                         data.num_classes, seed=int(config.seed))
    method = method_registry.build_method(config.reweighting, config=config,
                                          data=data)
    trainer = trainer_lib.AdversarialTrainer(
        network, objective=objective,
        coefficients=objective.coefficients(config.objective),
        train_attack=attack, method=method,
        steps_per_epoch=data.steps_per_epoch,
        weight_decay=float(config.optimizer.weight_decay),
        seed=int(config.seed), jit_compile=use_xla(config.xla))
    optimizer = keras.optimizers.SGD(
        learning_rate=learning_rate(config.optimizer, data.steps_per_epoch),
        momentum=float(config.optimizer.momentum),
        nesterov=bool(config.optimizer.nesterov))
    optimizer = precision.wrap_optimizer(optimizer,
                                         config.get("precision", "float32"))
    # Never compile(jit_compile=True) under a strategy: XLA is on PGD only.
    trainer.compile(optimizer=optimizer, jit_compile=False)
    checkpointer = callbacks.Checkpointer(
        os.path.join(workdir, "checkpoints"), trainer,
        keep=int(config.checkpoints_to_keep))
    initial_epoch = checkpointer.restore_latest()
  _write_run_files(config, workdir, data)
  if initial_epoch:
    logging.info("Resuming %s from epoch %d", workdir, initial_epoch)
  return Run(config, workdir, strategy, data, trainer, checkpointer,
             initial_epoch)


def _write_run_files(config, workdir, data):
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, "config.json")
  resolved = json.loads(config.to_json_best_effort())
  if os.path.exists(path):
    with open(path) as f:
      previous = json.load(f)
    if previous != resolved:
      logging.warning("config differs from the one saved in %s; keeping the "
                      "old one as config.previous.json", path)
      os.replace(path, os.path.join(workdir, "config.previous.json"))
  with open(path, "w") as f:
    json.dump(resolved, f, indent=2, sort_keys=True)
  with open(os.path.join(workdir, "data.json"), "w") as f:
    json.dump({"num_train": int(data.num_train), "num_classes": data.num_classes,
               "class_counts": [int(n) for n in data.class_counts],
               "image_shape": list(data.image_shape)}, f, indent=2)


def train_and_evaluate(run):
  config, workdir, trainer = run.config, run.workdir, run.trainer
  epochs = int(config.epochs)
  if run.initial_epoch < epochs:
    trainer.fit(
        run.data.train(run.initial_epoch, epochs),
        epochs=epochs, initial_epoch=run.initial_epoch, shuffle=False,
        steps_per_epoch=run.data.steps_per_epoch,
        verbose=0,  # callbacks.Progress instead of Keras's bar
        callbacks=[
            callbacks.Progress(epochs, run.data.steps_per_epoch,
                               live=sys.stdout.isatty()),
            callbacks.CheckpointCallback(run.checkpointer),
            keras.callbacks.TensorBoard(os.path.join(workdir, "tb")),
            callbacks.EpochSummaries(trainer, os.path.join(workdir, "tb"),
                                     run.data.train_ids),
        ])
  trainer.method.save_artifacts(workdir)
  results = evaluate(run)
  export_lib.export(trainer.network, os.path.join(workdir, "export"))
  return results


def evaluate(run):
  config = run.config
  logging.info("Evaluating on the test split: %s", ", ".join(config.eval.attacks))
  logits_fn = lambda x: run.trainer.network(x, training=False)[0]  # noqa: E731
  results = robustness.evaluate(
      logits_fn, run.data.test(), config.eval, run.data.num_classes,
      seed=int(config.seed), jit_compile=use_xla(config.xla),
      verbose=1 if sys.stdout.isatty() else 0)
  results.update(reports.run_reports(config.eval.reports, reports.ReportContext(
      logits_fn=logits_fn, data=run.data, config=config, workdir=run.workdir,
      results=dict(results), seed=int(config.seed),
      jit_compile=use_xla(config.xla),
      training_attacks=(run.trainer.train_attack,
                        *run.trainer.method.extra_attacks))))
  with open(os.path.join(run.workdir, "eval.json"), "w") as f:
    json.dump(results, f, indent=2)
  robustness.write_summaries(results, os.path.join(run.workdir, "tb", "eval"))
  for name in config.eval.attacks:
    r = results[name]
    logging.info("%-8s accuracy %.4f  worst class %.4f", name, r["accuracy"],
                 r["worst_class"])
  return results
