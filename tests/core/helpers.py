"""Small configs and runs shared by the core tests."""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

from configs import common  # noqa: E402


def tiny_config(method_config="at", preset="digits", **overrides):
  """A method config on the embedded digits, shrunk to seconds."""
  import importlib
  module = importlib.import_module(f"configs.{method_config}")
  c = module.get_config(preset)
  if method_config == "at":  # AT's reference extras (configs/at.py) cost seconds
    c.eval.attacks = ("natural", "fgsm", "pgd20", "cw")
    c.eval.reports = ("cross_attack",)
  c.epochs = 2
  c.batch_size = 32
  c.model.filters = (16, 16, 32, 32)
  c.model.dense_units = (64, 64)
  c.optimizer.learning_rate = 0.1  # SmallCNN's zero-init head starts slowly
  c.attack.steps = 3
  c.eval.pgd_steps = 5
  c.eval.cw_steps = 5
  c.eval.max_examples = 96
  c.data.eval_batch_size = 48
  for key, value in overrides.items():
    node = c
    *path, leaf = key.split(".")
    for p in path:
      node = node[p]
    node[leaf] = value
  return c


def fit_steps(config, workdir, steps, steps_per_epoch=None):
  """prepare() a run in `workdir` and fit `steps` steps of its first epoch.

  steps_per_epoch, if given, shortens the trainer's epoch (it is read when
  train_step is traced), so a method's burn-in switch falls within a few steps.
  """
  from official.core import experiment
  run = experiment.prepare(config, str(workdir))
  if steps_per_epoch:
    run.trainer.steps_per_epoch = steps_per_epoch
  run.trainer.fit(run.data.train(0, 1), epochs=1, steps_per_epoch=steps,
                  verbose=0)
  return run


# tiny_config's sizes as command-line overrides, for runs through the CLI.
TINY_FLAGS = [
    "--config=configs/at.py:digits", "--config.batch_size=32",
    "--config.model.filters=(16,16,32,32)", "--config.model.dense_units=(64,64)",
    "--config.attack.steps=2", "--config.eval.attacks=('natural',)",
    "--config.eval.reports=()", "--config.eval.max_examples=96",
    "--config.data.eval_batch_size=48"]


def train_cli(args, module="official.train", timeout=600):
  """Runs `python -m official.train ARGS` as a user would (default console:
  no TF_CPP_MIN_LOG_LEVEL, no --verbosity); returns the CompletedProcess."""
  import subprocess
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  env["CUDA_VISIBLE_DEVICES"] = ""
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO,
                        capture_output=True, text=True, env=env, timeout=timeout)


def error_lines(proc):
  return [l for l in proc.stderr.splitlines() if l.startswith("error:")]


def fit_epochs(config, workdir, steps_per_epoch=6):
  """prepare() a run and fit it to config.epochs through experiment._fit
  (the method's epoch hooks, checkpoints, eval.select's record), with epochs
  cut to `steps_per_epoch` steps; resumes like a rerun of the command."""
  from official.core import experiment
  from official.core import workdir as workdir_lib
  run = experiment.prepare(config, str(workdir))
  run.data.steps_per_epoch = run.trainer.steps_per_epoch = steps_per_epoch
  try:
    experiment._fit(run)  # pylint: disable=protected-access
  finally:
    workdir_lib.release(str(workdir))
  return run
