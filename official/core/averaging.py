"""Weight averaging (`config.averaging`): SWA or a (gated) EMA of the weights.

Once per epoch, after the method's `on_epoch_end` and before the epoch's
checkpoint, the network's weights may join an average; after training the
average is what is exported and evaluated (eval.json says so under
"weights"). Epochs are 0-based: `averaging_start_epoch=s` lets the weights at
the end of epochs s, s+1, ... join.

  swa  Stochastic weight averaging (Izmailov et al. 2018), as ARoW's
       `utils/swa.py` (dyoony/ARoW @0039411): after each epoch e >= s,
       θ̄ ← θ̄ + (θ − θ̄)/(n + 1), n ← n + 1 (the first copies θ): the plain
       mean of the epochs' end weights. Trainable variables only; the batch-norm
       statistics of θ̄ are then recomputed by one pass over the training data
       in training mode with cumulative averages (`bn_update`: momentum
       b/(n + b), i.e. every batch counts equally), as ARoW's `bn_update`
       before it evaluates or saves its SWA model. (ARoW: `--swa_start 51`,
       1-based, = s = 50 here, of 120 epochs.)
  ema  An exponential moving average with decay α per EPOCH, updated only in
       epochs the method accepts (`Method.accept_average`: CFA's
       fairness-aware averaging; every epoch otherwise): the first accepted
       epoch copies θ, later ones θ̄ ← α·θ̄ + (1 − α)·θ. Every floating
       network variable is averaged, batch-norm statistics included (CFA
       averages the whole state dict), so there is no bn_update.

The average, its count and the epoch it last took are variables saved in
every checkpoint with the network (a resumed run continues it exactly).
`bn_update` differs from PyTorch's in one point: Keras's moving variance is
the biased batch variance (PyTorch keeps the unbiased one); with batches of
128 the two differ by 1/127 of the variance.
"""
import keras
import tensorflow as tf

from official.common import checks

MODES = ("none", "swa", "ema")


def check(config):
  """One-line errors for bad averaging keys (before anything is built)."""
  mode = config.get("averaging", "none")
  checks.check_choice("averaging", mode, MODES)
  if mode == "none":
    return
  start = int(config.get("averaging_start_epoch", 0))
  epochs = int(config.epochs)
  if not 0 <= start < epochs:
    raise ValueError(f"averaging_start_epoch must be in [0, epochs - 1] = "
                     f"[0, {epochs - 1}] (0-based: the first epoch whose "
                     f"weights join the average), got {start}")
  if mode == "ema":
    decay = float(config.get("averaging_decay", 0.88))
    if not 0.0 < decay < 1.0:
      raise ValueError(f"averaging_decay must be in (0, 1), got {decay}")


def _averaged_variables(network, mode):
  """The network variables a mode averages (floating ones: never a seed)."""
  variables = (network.trainable_variables if mode == "swa"
               else network.variables)
  return [v for v in variables if tf.as_dtype(v.dtype).is_floating]


class WeightAverage:
  """The running average of a network's weights; build under strategy.scope()."""

  def __init__(self, network, mode, start_epoch=0, decay=0.88):
    if mode not in MODES[1:]:
      raise ValueError(f"WeightAverage needs mode swa or ema, got {mode!r}")
    self.mode = mode
    self.start_epoch = int(start_epoch)
    self.decay = float(decay)
    self.network = network
    self.sources = _averaged_variables(network, mode)
    self.average = [tf.Variable(tf.zeros_like(v), trainable=False,
                                name=f"average_{i}")
                    for i, v in enumerate(self.sources)]
    self.count = tf.Variable(0, dtype=tf.int64, trainable=False,
                             name="averaged_epochs")
    # The 0-based epochs of the first and the last weights averaged (-1: none).
    self.first_epoch = tf.Variable(-1, dtype=tf.int64, trainable=False,
                                   name="first_averaged_epoch")
    self.last_epoch = tf.Variable(-1, dtype=tf.int64, trainable=False,
                                  name="last_averaged_epoch")

  def state(self):
    """{name: variable} for the checkpoint."""
    return {"average": self.average, "count": self.count,
            "first_epoch": self.first_epoch, "last_epoch": self.last_epoch}

  def update(self, epoch, accepted=True):
    """Takes the weights at the end of (0-based) `epoch`, if it qualifies."""
    if epoch < self.start_epoch or not accepted:
      return False
    n = int(self.count.numpy())
    if n == 0:
      rate = 1.0  # the first copies
    elif self.mode == "swa":
      rate = 1.0 / (n + 1)
    else:
      rate = 1.0 - self.decay
    for avg, v in zip(self.average, self.sources):
      avg.assign(avg + rate * (tf.convert_to_tensor(v) - avg))
    self.count.assign_add(1)
    if n == 0:
      self.first_epoch.assign(epoch)
    self.last_epoch.assign(epoch)
    return True

  def apply_to(self, network, train_batches=None):
    """Writes the average into `network` (the trained one: after its last
    checkpoint) and, for SWA, recomputes its batch-norm statistics over
    `train_batches` (an iterable of {"image": ...} batches).

    Returns what eval.json records under "weights", or, if no epoch was
    averaged (a gate that never opened), leaves `network` as it is and says so.
    """
    n = int(self.count.numpy())
    info = {"averaging": self.mode, "epochs_averaged": n}
    if n == 0:
      info["evaluated"] = "last (no epoch was averaged)"
      return info
    for v, avg in zip(self.sources, self.average):
      v.assign(avg)
    info.update(first_epoch=int(self.first_epoch.numpy()) + 1,
                last_epoch=int(self.last_epoch.numpy()) + 1)
    if self.mode == "ema":
      info["decay"] = self.decay
    if self.mode == "swa" and batch_norm_layers(network):
      info["bn_update_batches"] = bn_update(network, train_batches)
    info["evaluated"] = self.mode
    return info


def batch_norm_layers(network):
  return [layer for layer in _all_layers(network)
          if isinstance(layer, keras.layers.BatchNormalization)]


def _all_layers(model):
  for layer in model.layers:
    yield layer
    if hasattr(layer, "layers"):  # nested models
      yield from _all_layers(layer)


def bn_update(network, batches):
  """Recomputes BN moving statistics as the mean over `batches`.

  The moving statistics are reset (mean 0, variance 1) and each batch k
  (1-based) enters with momentum 1 − 1/k, so after the pass they hold the
  equal-weight mean of every batch's statistics (PyTorch's momentum=None;
  SWA's bn_update). The momentum is a variable during the pass, so one
  traced forward serves every batch. Returns the number of batches.
  """
  bns = batch_norm_layers(network)
  saved = [layer.momentum for layer in bns]
  momentum = tf.Variable(0.0, trainable=False, name="bn_update_momentum")
  for layer in bns:
    layer.moving_mean.assign(tf.zeros_like(layer.moving_mean))
    layer.moving_variance.assign(tf.ones_like(layer.moving_variance))
    layer.momentum = momentum

  @tf.function
  def forward(images):
    network(images, training=True)

  count = 0
  try:
    for batch in batches:
      count += 1
      momentum.assign(1.0 - 1.0 / count)
      forward(tf.cast(batch["image"], tf.float32))
  finally:
    for layer, m in zip(bns, saved):
      layer.momentum = m
  return count


def build(config, network):
  """The run's WeightAverage, or None for `averaging: none`."""
  mode = config.get("averaging", "none")
  if mode == "none":
    return None
  return WeightAverage(network, mode,
                       int(config.get("averaging_start_epoch", 0)),
                       float(config.get("averaging_decay", 0.88)))


class AveragingCallback(keras.callbacks.Callback):
  """Updates the average at each epoch's end (after the method's hooks,
  before the checkpoint: listed between MethodEpochHooks and
  CheckpointCallback)."""

  def __init__(self, average, method):
    super().__init__()
    self.average = average
    self.method = method

  def on_epoch_end(self, epoch, logs=None):
    self.average.update(epoch, bool(self.method.accept_average(epoch)))

