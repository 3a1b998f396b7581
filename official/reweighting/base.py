"""The reweighting interface every method implements, and its helpers.

A method turns what the training step knows about a batch into per-example
weights for the objective's loss terms. The step calls, in this order:

  1. `attack_budget(ctx)`    -> (epsilon [B], step_size [B]) per-example budget
                                of the training attacks, or None for the
                                config's scalars (IAAT). ctx has the batch,
                                the epoch and `ctx.attack(...)` only.
  2. the training attack (the objective's) and `extra_attacks` run;
     forward passes in training mode give natural / adversarial logits
     (and features, if `needs_features`).
  3. `extra_terms(ctx)`      -> {term: [B]} added to the objective's terms;
                                a name that exists replaces that term (SRAT's
                                focal loss), a new one is added with
                                coefficient 1 (LRAT's natural and CW members,
                                SRAT's separability loss). New names must be
                                listed in `extra_term_names` (for the logs).
  4. `weights(ctx)`          -> {term: [B]} per-example weights; a term that is
                                not named keeps weight 1. Weights are treated
                                as constants (the step stops their gradient).
  5. `metrics(ctx, weights)` -> {name: scalar} extra logs (names fixed in
                                `metric_names`).

Around the steps, once per epoch and eagerly (not traced), the run calls
`on_epoch_begin(epoch, run)` before an epoch's first step (FRL's multipliers
from the validation split) and `on_epoch_end(epoch, run)` after its last step
and before its checkpoint (WAT's Hedge update, CFA's validation check), then
asks `accept_average(epoch)` whether the weight average (config.averaging)
takes this epoch's weights (CFA's fairness-aware averaging). `run` is an
`EpochContext` (below). State they change must live in `build_state()`
variables, so that a resumed run continues exactly.

`ctx` is a `StepContext` (below). State lives in variables created in
`build_state()`, which the trainer calls under the strategy scope and saves in
every checkpoint. Per-example state goes in a `PerExampleMemory`, which stays
consistent across replicas. Anything normalised over "the batch" must use
`global_sum` / `global_gather` so a 2-replica run equals a 1-device run.

The loss of a step is  sum_k c_k · sum_i w_k,i · term_k,i / global_batch_size,
so weights with mean 1 over the global batch leave the loss scale unchanged.
"""
import dataclasses
from typing import Callable, Optional

import tensorflow as tf

from official.common import checks
from official.common import replicas


@dataclasses.dataclass
class StepContext:
  """What a method may read about one (per-replica) batch."""
  images: tf.Tensor                      # [B, H, W, C] in [0, 1]
  labels: tf.Tensor                      # [B] int32
  ids: tf.Tensor                         # [B] int32, stable example ids
  epoch: tf.Tensor                       # int32 scalar, 0-based
  step: tf.Tensor                        # int64 scalar, optimizer iterations
  global_batch_size: int
  # Runs any AttackSpec on the (frozen-BN) model: attack(spec, x, y,
  # epsilon=None, step_size=None) -> (x_adv, stats). Seeds are handled.
  attack: Callable
  natural_logits: Optional[tf.Tensor] = None   # training-mode f(x), if computed
  # Per training attack name: training-mode logits / features of its variant.
  adversarial_logits: dict = dataclasses.field(default_factory=dict)
  features: dict = dataclasses.field(default_factory=dict)  # incl. "natural"
  # Per training attack name: the attack's statistics (see attacks/pgd.py).
  attack_stats: dict = dataclasses.field(default_factory=dict)
  terms: dict = dataclasses.field(default_factory=dict)     # {term: [B]}
  primary_attack: str = ""               # name of the objective's attack
  # Per training attack name: its adversarial batch (no gradient), and the
  # frozen-BN forward images -> logits the attacks use (DONE's implicit term).
  adversarial_inputs: dict = dataclasses.field(default_factory=dict)
  forward: Optional[Callable] = None
  # bn mode ("frozen" | "batch", AttackSpec.bn) -> images -> logits, the
  # forward an attack with that BN mode uses (IAAT's clean check).
  attack_forward: Optional[Callable] = None


@dataclasses.dataclass
class EpochContext:
  """What a method's epoch hooks may use (eager, cross-replica context)."""
  network: object            # keras.Model, outputs [logits, features]
  data: object               # DataBundle
  config: object             # the whole config
  strategy: object           # tf.distribute strategy of the run
  seed: int
  jit_compile: bool
  # validation(spec, epoch) -> evaluation/validation.py ValidationResult: the
  # current network on the validation split (data.validation_per_class) under
  # an AttackSpec, per class (clean / robust accuracy, mean CE and KL);
  # `epoch`: epochs its weights have completed (random starts, cache). None
  # without a validation split.
  validation: Optional[Callable] = None


class Method:
  """Base class and the identity method ("none"): every weight is 1."""
  name = "none"
  extra_attacks = ()        # AttackSpecs whose variants also get a training pass
  needs_natural = False     # whether ctx.natural_logits must be computed
  needs_features = False    # whether ctx.features must be filled
  extra_term_names = ()     # names of the terms extra_terms() adds
  metric_names = ()         # scalars returned by metrics()

  def __init__(self, cfg, *, config, data):
    """cfg: config.reweighting; config: the whole config; data: DataBundle."""
    self.cfg = cfg
    self.config = config
    self.data = data

  @classmethod
  def needs_validation(cls, cfg):
    """Whether, with this config.reweighting, its epoch hooks use
    run.validation (FRL, WAT, CFA's FAWA): the run then needs
    data.validation_per_class > 0 (checked before any data is loaded)."""
    del cfg
    return False

  def build_state(self):
    """Creates state variables; returns {name: tf.Variable or PerExampleMemory}."""
    return {}

  def attack_budget(self, ctx):
    del ctx
    return None

  def extra_passes_epoch(self):
    """The first epoch (0-based) whose steps need the extra attacks, their
    training forwards and a natural forward only the method uses; 0: every
    step. Before it every weight on their terms must be 0 (LRAT's burn-in):
    the trainer then runs a step without them (zeros stand in for their
    logits, features and attack statistics)."""
    return 0

  def extra_terms(self, ctx):
    del ctx
    return {}

  def weights(self, ctx):
    del ctx
    return {}

  def metrics(self, ctx, weights):
    del ctx, weights
    return {}

  def on_epoch_begin(self, epoch, run):
    """Before the first step of (0-based) `epoch`; run: EpochContext."""
    del epoch, run

  def on_epoch_end(self, epoch, run):
    """After the last step of `epoch`, before its checkpoint is saved."""
    del epoch, run

  def accept_average(self, epoch):
    """Whether config.averaging takes the weights of `epoch` (after
    on_epoch_end). Default: always (a gated average says when not)."""
    del epoch
    return True

  def epoch_summaries(self):
    """{name: value} for TensorBoard after each epoch: arrays become
    histograms, scalars (0-d) become scalar curves."""
    return {}

  def save_artifacts(self, workdir):
    """Called once after training: write files (e.g. IAAT's eps.npy)."""
    del workdir

  def inference_logits(self, logits):
    """The deployed logits from the network's: what the evaluation attacks
    AND the export serves (one function: model_registry.logits_model).
    Default: the network's own. RoBal-N: s·z − τ_p·log π. Applied to a
    symbolic Keras tensor: arithmetic and keras.ops only. A method that
    overrides it must build from `data.class_counts` and `num_classes`
    alone (core/export.py rebuilds it from a run's config.json + data.json).
    """
    return logits


# Methods check their config choices with the one shared helper.
check_choice = checks.check_choice


# Global-batch reductions for methods (official/common/replicas.py).
global_sum = replicas.global_sum
global_gather = replicas.global_gather


class PerExampleMemory:
  """A [num_ids, ...] variable indexed by example id, correct under replicas.

  With the default aggregation every replica would write its own copy and the
  copies would silently diverge. Here each replica gathers the ids and values
  of the whole global batch and applies the same update, and the variable uses
  ONLY_FIRST_REPLICA aggregation, so every update lands and copies stay equal.
  """

  def __init__(self, name, num_ids, initial_value=0.0, dtype=tf.float32,
               shape=()):
    self.variable = tf.Variable(
        tf.fill([num_ids, *shape], tf.cast(initial_value, dtype)),
        name=name, trainable=False, dtype=dtype,
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

  def gather(self, ids):
    return tf.gather(self.variable, ids)

  def update(self, ids, values):
    values = tf.cast(values, self.variable.dtype)
    all_ids, all_values = global_gather(ids), global_gather(values)
    return self.variable.scatter_update(tf.IndexedSlices(all_values, all_ids))

  def numpy(self):
    return self.variable.numpy()

