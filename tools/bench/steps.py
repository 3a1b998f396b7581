"""The training steps that race: the project's, and a bare Keras PGD-AT step.

Both are contenders of tools/bench/timing.py: fn(steps) -> (examples,
seconds), the seconds measured until the last step's loss is read.
"""
import importlib
import time

from absl import flags

_XLA = flags.DEFINE_string("xla", "off", "XLA for the PGD loops: off | on.")
# Past every burn-in / warm-up: the benchmark times each method's full step.
FULL_STEP = {"gairat": {"reweighting.burn_in_epochs": 0},
             "mail": {"reweighting.burn_in_epochs": 0},
             "lrat": {"reweighting.burn_in_epochs": 0},
             "done": {"reweighting.burn_in_epochs": 0},
             "srat": {"reweighting.defer_epochs": 0},
             "iaat": {"reweighting.warmup_epochs": 0}}


def load_config(method, preset, **overrides):
  module = importlib.import_module(f"configs.{method}")
  config = module.get_config(preset)
  config.xla = _XLA.value
  for key, value in {**FULL_STEP.get(method, {}), **overrides}.items():
    node = config
    *path, leaf = key.split(".")
    for p in path:
      node = node[p]
    node[leaf] = value
  return config


class ProjectStep:
  """The project's compiled step (prepare() as official.train does)."""

  def __init__(self, config, workdir):
    from official.core import experiment
    self.run = experiment.prepare(config, workdir)
    self.batch = int(config.batch_size)
    epochs = int(config.epochs)
    self.iterator = iter(self.run.data.train(0, epochs).repeat())
    self.run.trainer.make_train_function()

  def __call__(self, steps):
    start = time.perf_counter()
    logs = None
    for _ in range(steps):
      logs = self.run.trainer.train_function([next(self.iterator)])
    float(logs["loss"])  # waits for the last step
    return steps * self.batch, time.perf_counter() - start


def bare_pgd(forward, x, y, noise, eps, alpha, steps):
  """L-inf PGD and nothing else: start x + noise, `steps` signed CE-gradient
  steps, each projected on the eps-ball and [0, 1]. The attack of the
  reference loop and of the eval section's floor."""
  import tensorflow as tf
  lower, upper = tf.maximum(x - eps, 0.0), tf.minimum(x + eps, 1.0)
  x_adv = tf.clip_by_value(x + noise, lower, upper)
  for _ in tf.range(steps):
    with tf.GradientTape() as tape:
      tape.watch(x_adv)
      loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
          labels=y, logits=forward(x_adv)))
    x_adv = tf.clip_by_value(x_adv + alpha * tf.sign(tape.gradient(loss, x_adv)),
                             lower, upper)
  return x_adv


class ReferenceStep:
  """A bare Keras PGD-AT step: the same network, batch, attack, optimizer.

  Plain CE on the adversarial batch, coupled weight decay, PGD-K with a
  uniform start in an XLA-or-graph tf.function; nothing else (no weights,
  no per-term metrics, no per-example memory, no statistics).
  """

  def __init__(self, config, data):
    import keras
    import tensorflow as tf
    from official.modeling import registry
    network = registry.build_model(config.model, data.image_shape,
                                   data.num_classes, seed=int(config.seed))
    optimizer = keras.optimizers.SGD(float(config.optimizer.learning_rate),
                                     momentum=float(config.optimizer.momentum))
    variables = network.trainable_variables
    optimizer.build(variables)
    eps, alpha = float(config.attack.epsilon), float(config.attack.step_size)
    steps, wd = int(config.attack.steps), float(config.optimizer.weight_decay)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits

    @tf.function(jit_compile=config.xla == "on")
    def attack(x, y, seed):
      noise = tf.random.stateless_uniform(tf.shape(x), seed, -eps, eps)
      return bare_pgd(lambda images: network(images)[0], x, y, noise, eps,
                      alpha, steps)

    @tf.function
    def step(batch, seed):
      x = tf.cast(batch["image"], tf.float32)
      y = tf.cast(batch["label"], tf.int32)
      x_adv = attack(x, y, seed)
      with tf.GradientTape() as tape:
        logits = tf.cast(network(x_adv, training=True)[0], tf.float32)
        loss = tf.reduce_mean(ce(labels=y, logits=logits))
      grads = tape.gradient(loss, variables)
      optimizer.apply([g + wd * v for g, v in zip(grads, variables)],
                      variables)
      return loss

    self.step, self.batch = step, int(config.batch_size)
    self.iterator = iter(data.train(0, int(config.epochs)).repeat())
    self.count = 0

  def __call__(self, steps):
    import tensorflow as tf
    start = time.perf_counter()
    for _ in range(steps):
      self.count += 1
      loss = self.step(next(self.iterator), tf.constant([0, self.count]))
    float(loss)
    return steps * self.batch, time.perf_counter() - start
