"""The current network on the validation split, per class: what the methods'
epoch hooks (FRL, CFA, WAT) and eval.select=best_val read.

`Validator(network, data, ...)(spec, epoch)` runs one attack (an AttackSpec,
BN frozen: training=False) over the whole validation split
(`DataBundle.validation()`, data/holdout.py) and returns a `ValidationResult`:
per-class clean and robust accuracy, per-class mean losses (CE on the clean
and on the adversarial image, KL(p(x) ‖ p(x~)) as TRADES), and their overall
values over all validation images (the official codes' "total" numbers).

`epoch` is the number of epochs the evaluated weights have completed: it keys
the random starts (stateless: (seed, epoch, batch, attack name)), so a
resumed run, or 2 replicas, draw what a straight 1-device run draws, and it
keys a cache: two hooks asking for the same attack on the same weights (CFA's
gate and eval.select) share one evaluation. Batches are padded to one size
(repeated rows, dropped) and split across the replicas as in
evaluation/robustness.py: 1 device and 2 replicas give the same numbers.
"""
import dataclasses

import numpy as np
import tensorflow as tf

from official.attacks import autoattack
from official.attacks import losses
from official.attacks import pgd
from official.evaluation.robustness import _pad_rows

SEED_OFFSET = 104729  # validation draws independent of training and test ones
LOSSES = ("nat_ce", "adv_ce", "kl")


def pgd_spec(config, steps, name=None):
  """CE-PGD-`steps` at the TRAINING epsilon and step (config.attack), uniform
  random start: the validation attack of eval.select (steps 10), CFA's gate
  (10) and FRL's multipliers (20). Training keys, not eval.*: a finished
  run's record stays valid when its eval.* settings change."""
  return pgd.AttackSpec(name or f"val_pgd{steps}", "ce",
                        float(config.attack.epsilon),
                        float(config.attack.step_size), int(steps), "uniform")


def trades_spec(config, steps=None, name="val_kl"):
  """TRADES' KL-PGD at the training settings (x + 0.001·N(0, 1) start):
  WAT's validation attack."""
  return pgd.AttackSpec(name, "kl", float(config.attack.epsilon),
                        float(config.attack.step_size),
                        int(steps or config.attack.steps), "gaussian")


@dataclasses.dataclass
class ValidationResult:
  attack: dict            # the AttackSpec's settings
  epoch: int              # epochs completed by the evaluated weights
  counts: np.ndarray      # int64 [K] validation images per class
  clean: np.ndarray       # [K] clean accuracy per class
  robust: np.ndarray      # [K] accuracy under the attack per class
  clean_accuracy: float   # over all validation images
  robust_accuracy: float
  losses: dict            # {nat_ce, adv_ce, kl: [K] per-class means}
  mean_losses: dict       # {nat_ce, adv_ce, kl: mean over all images}

  def summary(self):
    """JSON-able dict (eval.json, the selection record)."""
    return {"epoch": int(self.epoch), "attack": self.attack,
            "clean_accuracy": float(self.clean_accuracy),
            "robust_accuracy": float(self.robust_accuracy),
            "per_class_clean": [float(v) for v in self.clean],
            "per_class_robust": [float(v) for v in self.robust],
            "worst_class_robust": float(np.min(self.robust)),
            "num_examples": int(np.sum(self.counts))}


def per_class(values, labels, num_classes):
  """[K] means of `values` over the examples of each class (NaN if none)."""
  values = np.asarray(values, np.float64)
  counts = np.bincount(labels, minlength=num_classes)
  sums = np.bincount(labels, weights=values, minlength=num_classes)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def summarize(outputs, labels, num_classes, spec, epoch):
  """ValidationResult from per-example arrays {clean, robust, nat_ce, adv_ce,
  kl} and labels."""
  labels = np.asarray(labels)
  return ValidationResult(
      attack=spec.to_dict(), epoch=int(epoch),
      counts=np.bincount(labels, minlength=num_classes).astype(np.int64),
      clean=per_class(outputs["clean"], labels, num_classes),
      robust=per_class(outputs["robust"], labels, num_classes),
      clean_accuracy=float(np.mean(outputs["clean"])),
      robust_accuracy=float(np.mean(outputs["robust"])),
      losses={k: per_class(outputs[k], labels, num_classes) for k in LOSSES},
      mean_losses={k: float(np.mean(outputs[k])) for k in LOSSES})


class Validator:
  """Evaluates a network on `data.validation()`; see the module docstring."""

  def __init__(self, network, data, *, strategy=None, seed=0,
               jit_compile=False, inference_logits=None):
    self.network = network
    # The deployed logits (Method.inference_logits: RoBal-N's adjustment), so
    # that validation judges what the export would serve.
    self.inference_logits = inference_logits or (lambda z: z)
    self.data = data
    self.strategy = strategy
    self.seed = int(seed) + SEED_OFFSET
    self.jit_compile = bool(jit_compile)
    self._functions = {}   # (spec, id(network)) -> traced batch function
    self._results = {}     # (spec, epoch, id(network)) -> ValidationResult

  def __call__(self, spec, epoch, network=None):
    """ValidationResult of `spec` on `network` (default: the run's) whose
    weights have completed `epoch` epochs."""
    network = network if network is not None else self.network
    key = (spec, int(epoch), id(network))
    if key not in self._results:
      # Only the latest weights' results are kept (a bounded cache).
      self._results = {k: v for k, v in self._results.items()
                       if k[1] == int(epoch)}
      self._results[key] = self._evaluate(spec, int(epoch), network)
    return self._results[key]

  def _function(self, spec, network):
    key = (spec, id(network))
    if key not in self._functions:
      forward = lambda x: tf.cast(self.inference_logits(  # noqa: E731
          network(x, training=False)[0]), tf.float32)
      attack = pgd.make_attack(forward, spec, self.jit_compile,
                               final_logits=False)

      def batch(images, labels, seed):
        nat = forward(images)
        x_adv, _ = attack(images, labels, seed, nat_logits=nat)
        adv = forward(x_adv)
        return {"clean": _correct(nat, labels), "robust": _correct(adv, labels),
                "nat_ce": losses.cross_entropy(nat, labels),
                "adv_ce": losses.cross_entropy(adv, labels),
                "kl": losses.kl_divergence(nat, adv)}

      self._functions[key] = autoattack.replicated(batch, self.strategy,
                                                   function=True)
    return self._functions[key]

  def _evaluate(self, spec, epoch, network):
    call = self._function(spec, network)
    replicas = (self.strategy.num_replicas_in_sync
                if self.strategy is not None else 1)
    outputs, labels, size = {}, [], 0
    for index, batch in enumerate(self.data.validation()):
      images = tf.cast(batch["image"], tf.float32)
      y = tf.cast(batch["label"], tf.int32)
      real = int(y.shape[0])
      if not size:  # the first batch fixes the traced shape
        size = -(-real // replicas) * replicas
      seed = pgd.stateless_seed(self.seed, epoch * 2**20 + index, spec.name)
      out = call((_pad_rows(images, size), _pad_rows(y, size)), (seed,))
      for k, v in out.items():
        outputs.setdefault(k, []).append(v.numpy()[:real])
      labels.append(y.numpy())
    outputs = {k: np.concatenate(v) for k, v in outputs.items()}
    return summarize(outputs, np.concatenate(labels), self.data.num_classes,
                     spec, epoch)


def _correct(logits, labels):
  return tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels),
                 tf.float32)
