"""The adversarial training step: one Keras model, every method.

Data flow of `train_step` (the whole story of a step is in this one function):

  batch {image, label, id}
    -> method.attack_budget       per-example epsilon / step (IAAT), or the config's
    -> attacks                    the objective's training attack + the method's
                                  extra attacks (LRAT), each an XLA-able PGD
    -> forward, training=True     natural (if needed) and every adversarial variant
    -> objective terms            per-example loss vectors, e.g. {"adv": CE(f(x~), y)}
       + method.extra_terms       (LRAT's pair members, SRAT's separability loss)
    -> method.weights             per-term, per-example weights (no gradient)
    -> loss = sum_k c_k sum_i w_ki l_ki / global_batch
    -> gradients + coupled weight decay -> optimizer update
    -> metrics                    loss, clean / adversarial accuracy, the
                                  method's; each example's (term, weight) row
                                  into the epoch record (statistics and
                                  histograms once per epoch: core/records.py)

`clean_accuracy` costs no pass: it is the training-mode natural forward's
accuracy when the loss has a natural pass (TRADES, MART, LRAT), else the
accuracy at the training attack's starting point (eval mode): the clean input
itself without a random start, x + the start's noise with one (PGD-AT's
uniform start: within that noise of the clean accuracy). Nor does
`adversarial_accuracy`: it is the training forward's accuracy on the training
attack's final iterate (training-mode BN and dropout; the attacks themselves
end without a forward of their own).

Weight decay is added to the gradients (PyTorch SGD style, which every paper's
code used), not Keras's decoupled form; each replica adds wd/replicas because
the optimizer sums replica gradients.

Mixed precision (`config.precision`, core/precision.py): logits, features,
terms and weights are float32 whatever the network computes in; under
mixed_float16 the loss is multiplied by the LossScaleOptimizer's scale before
the gradient, and its `apply` unscales (and skips non-finite steps).
"""
import keras
import tensorflow as tf

from official.attacks import pgd
from official.core import cluster
from official.core import precision
from official.core import records
from official.reweighting import base


class AdversarialTrainer(keras.Model):
  """Wraps a network with outputs [logits, features] for adversarial training."""

  def __init__(self, network, *, objective, coefficients, train_attack, method,
               steps_per_epoch, weight_decay, seed, jit_compile,
               epsilon_warmup_epochs=0, label_smoothing=0.0):
    super().__init__()
    self.network = network
    self.objective = objective
    self.coefficients = dict(coefficients)
    self.label_smoothing = float(label_smoothing)  # objective.label_smoothing
    self.train_attack = train_attack
    self.method = method
    self.steps_per_epoch = int(steps_per_epoch)
    self.weight_decay = float(weight_decay)
    self.seed = int(seed)
    self.jit_compile = bool(jit_compile)
    # Linear epsilon ramp over the first epochs (attack.epsilon_warmup_epochs).
    self.epsilon_warmup_steps = int(epsilon_warmup_epochs) * self.steps_per_epoch
    self._attacks = {}
    self._extras = True  # trace train_step with the method's extra passes
    # Tracked outside Keras (raw tf.Variables): saved by the checkpoint callback.
    self.method_state = method.build_state()
    # config.averaging's WeightAverage (core/averaging.py), set by the
    # experiment; saved by the checkpoint callback.
    self.averager = None
    self.term_names = tuple(self.coefficients) + tuple(
        n for n in getattr(method, "extra_term_names", ()) if n not in self.coefficients)
    names = ["loss", "clean_accuracy", "adversarial_accuracy"]
    names += [f"method/{n}" for n in method.metric_names]
    self.step_trackers = {n: keras.metrics.Mean(name=n) for n in names}
    # Per-term statistics and weight histograms: once per epoch from the
    # rows each step records (core/records.py), not reduced every step.
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    self.record = records.EpochRecord(
        self.term_names, method.data.batch_size // replicas,
        self.steps_per_epoch)
    self.trackers = dict(self.step_trackers)
    for term in self.term_names:
      for name in records.STATISTICS:
        name = name.format(term)
        self.trackers[name] = records.RecordView(self.record, name)
    self.built = True

  # The logits-only view, used by evaluation and export.
  def call(self, images, training=False):
    return self.network(images, training=training)[0]

  @property
  def metrics(self):
    return list(self.step_trackers.values()) + [self.record]

  def _get_metrics_result_or_logs(self, logs):
    # End of an epoch (Keras keeps the last step's logs for a custom
    # train_step): add the record's statistics, computed once, here.
    logs = super()._get_metrics_result_or_logs(logs)
    if not self.record.steps:
      return logs
    return {**logs, **self.record.result()}

  def _maybe_symbolic_build(self, iterator=None, data_batch=None):
    # Everything is built in __init__ and by the Checkpointer (optimizer).
    # Keras's symbolic build would only `strategy.reduce` a first batch, which
    # fails for dict batches under MultiWorkerMirroredStrategy (Keras 3.15).
    if self.optimizer is not None and self.optimizer.built:
      return
    super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

  def attack_fn(self, spec, final_logits=True):
    """The compiled attack for `spec` (cached; one XLA program per spec).

    The training attacks run with `final_logits=False`: their final iterate's
    logits come from the training forward, not from a forward of their own.
    """
    key = (spec, bool(final_logits))
    if key not in self._attacks:
      # Rescaled input gradients if the network computes in float16.
      rescale = any(layer.compute_dtype == "float16"
                    for layer in self.network.layers)
      self._attacks[key] = pgd.make_attack(self.attack_forward(spec.bn), spec,
                                           self.jit_compile, rescale,
                                           final_logits)
    return self._attacks[key]

  def attack_forward(self, bn="frozen"):
    """x -> logits for attacks: frozen BN, or batch statistics (`bn: batch`).

    `batch` goes through `stateless_call`, which returns the BN moving
    averages it would have written instead of assigning them: batch statistics
    inside the XLA PGD loop without a variable write (the moving averages stay
    those of the training forwards). Dropout, if any, is also in train mode.
    """
    network = self.network
    if bn == "frozen":
      return lambda x: network(x, training=False)[0]

    def forward(x):
      outputs, _ = network.stateless_call(
          [v.value for v in network.trainable_variables],
          [v.value for v in network.non_trainable_variables], x, training=True)
      return outputs[0]
    return forward

  def _seed(self, step, spec):
    # Stateless seeds from (config seed, step, attack name): resumed runs and
    # replica layouts draw the same random starts.
    return pgd.stateless_seed(self.seed, step, spec.name)

  def make_train_function(self, force=False):
    """Keras's step function; two of them for a method with a phase without
    extra passes (`Method.extra_passes_epoch`, e.g. LRAT's burn-in).

    One traced step without the extra attacks and forwards serves the epochs
    before the method's start, the ordinary one after: a tf.cond inside one
    step would also skip them, but it changes the graph of the steps that do
    run them (the gradient summation order: ~1e-9 differences after a few
    steps), where two functions keep those steps bit-identical.
    """
    start = self.method.extra_passes_epoch()
    if start <= 0 or (self.train_function is not None and not force):
      return super().make_train_function(force)
    functions = {}
    for extras in (False, True):
      super().make_train_function(force=True)
      functions[extras] = self.train_function
    self._extras = False

    def train_function(iterator):
      if not self._extras:  # once on, on for good: epochs only grow
        step = int(self.optimizer.iterations.numpy())
        self._extras = step // self.steps_per_epoch >= start
      # (The flag is also what a first call traces train_step with.)
      return functions[self._extras](iterator)

    self.train_function = train_function
    return train_function

  def _skipped_attack(self, images):
    """What a skipped attack returns: the clean batch and zero statistics."""
    batch = tf.shape(images)[0]
    zeros = tf.zeros([batch], tf.int32)
    return images, {"correct_count": zeros, "kappa_first": zeros,
                    "epsilon": tf.zeros([batch])}

  def _skipped_outputs(self, images):
    """Zero (logits, features) of a skipped training forward."""
    batch = tf.shape(images)[0]
    return tuple(tf.zeros([batch, *out.shape[1:]])
                 for out in self.network.outputs[:2])

  def _epsilon_ramp(self, step):
    """min(1, (step + 1) / warm-up steps), or None without a warm-up.

    The ε warm-up that lets narrow networks start at a large ε (the usual
    MNIST recipe): the attack's radius and step are scaled by the ramp, so a
    method's own per-example budget (IAAT) is scaled too.
    """
    if not self.epsilon_warmup_steps:
      return None
    return tf.minimum(1.0, tf.cast(step + 1, tf.float32)
                      / float(self.epsilon_warmup_steps))

  def train_step(self, data):
    images = tf.cast(data["image"], tf.float32)
    labels = tf.cast(data["label"], tf.int32)
    ids = tf.cast(data["id"], tf.int32)
    step = tf.convert_to_tensor(self.optimizer.iterations)
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    global_batch = images.shape[0] * replicas

    def run_attack(spec, x, y, epsilon=None, step_size=None,
                   final_logits=True):
      return self.attack_fn(spec, final_logits)(
          x, y, self._seed(step, spec), epsilon, step_size)

    ctx = base.StepContext(
        images=images, labels=labels, ids=ids,
        epoch=tf.cast(step // self.steps_per_epoch, tf.int32), step=step,
        global_batch_size=global_batch, attack=run_attack,
        primary_attack=self.train_attack.name,
        forward=self.attack_forward(), attack_forward=self.attack_forward)

    # 1-2. Per-example budget, then every training attack (BN frozen). In a
    # step traced without the extra passes (`make_train_function`: LRAT's
    # burn-in) the method's extra attacks do not run: zeros stand in.
    budget = self.method.attack_budget(ctx)
    epsilon, step_size = budget if budget is not None else (None, None)
    ramp = self._epsilon_ramp(step)
    variants = {}
    for spec in (self.train_attack, *self.method.extra_attacks):
      if spec is self.train_attack or self._extras:
        eps, alpha = epsilon, step_size
        if ramp is not None:  # radius and step shrink together
          eps = ramp * (spec.epsilon if eps is None else eps)
          alpha = ramp * (spec.step_size if alpha is None else alpha)
        variants[spec.name] = run_attack(spec, images, labels, eps, alpha,
                                         final_logits=False)
      else:
        variants[spec.name] = self._skipped_attack(images)
    ctx.attack_stats = {name: stats for name, (_, stats) in variants.items()}
    ctx.adversarial_inputs = {name: x for name, (x, _) in variants.items()}

    with tf.GradientTape() as tape:
      # 3. Training-mode forward passes, one per input (BN sees each batch
      # alone, as in the official codes).
      zeros = self._skipped_outputs(images)
      natural = self.objective.needs_natural or (
          self.method.needs_natural and self._extras)
      if self.objective.needs_natural or self.method.needs_natural:
        ctx.natural_logits, ctx.features["natural"] = (
            _float32(self.network(images, training=True)) if natural
            else zeros)
      for name, (x_adv, _) in variants.items():
        ctx.adversarial_logits[name], ctx.features[name] = (
            _float32(self.network(x_adv, training=True))
            if name == self.train_attack.name or self._extras else zeros)
      # 4. Per-example terms, the method's weights, the weighted loss.
      ctx.terms = dict(self.objective.terms(
          labels, ctx.natural_logits,
          ctx.adversarial_logits[self.train_attack.name],
          label_smoothing=self.label_smoothing))
      computed = set(ctx.terms)  # the objective's: always real
      ctx.terms.update(self.method.extra_terms(ctx))
      weights = {k: tf.stop_gradient(tf.cast(w, tf.float32))
                 for k, w in self.method.weights(ctx).items()}
      per_example = tf.add_n([
          self.coefficients.get(k, 1.0) * weights.get(k, 1.0) * term
          for k, term in ctx.terms.items()])
      loss = tf.reduce_sum(per_example) / global_batch
      # Under mixed_float16 the LossScaleOptimizer's scale (else None).
      scale = precision.loss_scale(self.optimizer)
      scaled_loss = loss if scale is None else self.optimizer.scale_loss(loss)

    # 5. Update. Weight decay joins the gradients at the same scale: the
    # optimizer unscales them all (and skips the step if any is not finite).
    variables = self.network.trainable_variables
    grads = tape.gradient(scaled_loss, variables)
    if self.weight_decay:
      decay = self.weight_decay / replicas
      if scale is not None:
        decay = decay * tf.convert_to_tensor(scale)
      grads = [g + decay * v for g, v in zip(grads, variables)]
    self.optimizer.apply(grads, variables)

    # Logs (outside the tape and any nested tf.function). Clean accuracy costs
    # no pass: the natural forward when the loss has one, else the training
    # attack's starting point (eval mode; the clean input itself when the
    # attack has no random start, else x + the start's noise).
    primary = ctx.attack_stats[self.train_attack.name]
    if natural:
      clean_accuracy = _accuracy(ctx.natural_logits, labels)
    else:
      clean_accuracy = tf.reduce_mean(
          tf.cast(primary["kappa_first"] > 0, tf.float32))
    # Adversarial accuracy: the training forward on the final iterate (the
    # attack runs no forward of its own there; eval-mode BN/dropout differ).
    adv_logits = ctx.adversarial_logits[self.train_attack.name]
    self.trackers["loss"].update_state(loss * replicas)
    self.trackers["clean_accuracy"].update_state(clean_accuracy)
    self.trackers["adversarial_accuracy"].update_state(
        _accuracy(adv_logits, labels))
    # Without the extra passes, the method's terms are on stand-in zeros:
    # not recorded (their weights, 0, are).
    self.record.update_state(
        {k: v for k, v in ctx.terms.items() if self._extras or k in computed},
        weights)
    for name, value in self.method.metrics(ctx, weights).items():
      self.trackers[f"method/{name}"].update_state(value)
    logs = {n: m.result() for n, m in self.step_trackers.items()}
    if cluster.is_multi_worker(tf.distribute.get_strategy()):
      # Keras 3.15 averages multi-worker logs with reduce(MEAN, axis=0):
      # give the scalars that axis.
      logs = {n: v[None] for n, v in logs.items()}
    return logs

  def test_step(self, data):
    logits = self.network(tf.cast(data["image"], tf.float32), training=False)[0]
    acc = _accuracy(logits, tf.cast(data["label"], tf.int32))
    self.trackers["clean_accuracy"].update_state(acc)
    return {"clean_accuracy": self.trackers["clean_accuracy"].result()}


def _float32(outputs):
  """(logits, features) in float32 whatever the network's compute dtype."""
  logits, features = outputs
  return tf.cast(logits, tf.float32), tf.cast(features, tf.float32)


def _accuracy(logits, labels):
  return tf.reduce_mean(tf.cast(
      tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32))
