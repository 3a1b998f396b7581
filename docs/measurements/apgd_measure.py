"""Speed and cross-check of APGD-CE / autoattack-fast against ART (the
measurement behind the README's ART cross-check table).

A tiny CNN is trained with FGSM + random start (Wong et al. 2020) on
mnist10k for a few epochs, then the first N test images are attacked at
eps 0.1 by: ours (XLA off / on; a warm-up run first, then a timed run with
another seed), and ART's AutoProjectedGradientDescent (CE, 100 iterations,
1 restart, eps_step = 2 eps as the reference's initial step).

  PYTHONPATH=. python docs/measurements/apgd_measure.py --n=300
"""
import argparse
import time

import keras
import numpy as np
import tensorflow as tf

from configs import common  # MNIST10K: ../shared/data beside the checkout
from official.attacks import autoattack


def train(x, y, eps, epochs, seed=0):
  keras.utils.set_random_seed(seed)
  model = keras.Sequential([
      keras.Input((28, 28, 1)),
      keras.layers.Conv2D(16, 3, strides=2, activation="relu"),
      keras.layers.Conv2D(32, 3, strides=2, activation="relu"),
      keras.layers.Flatten(), keras.layers.Dense(64, activation="relu"),
      keras.layers.Dense(10)])
  opt = keras.optimizers.Adam(1e-3)
  ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

  @tf.function
  def step(xb, yb, seed):
    delta = tf.random.stateless_uniform(tf.shape(xb), seed, -eps, eps)
    with tf.GradientTape() as tape:
      tape.watch(delta)
      loss = ce(yb, model(tf.clip_by_value(xb + delta, 0, 1)))
    g = tape.gradient(loss, delta)
    delta = tf.clip_by_value(delta + 1.25 * eps * tf.sign(g), -eps, eps)
    with tf.GradientTape() as tape:
      loss = ce(yb, model(tf.clip_by_value(xb + delta, 0, 1)))
    opt.apply(tape.gradient(loss, model.trainable_variables),
              model.trainable_variables)
    return loss

  i = 0
  for _ in range(epochs):
    for s in range(0, len(x) - 127, 128):
      step(x[s:s + 128], y[s:s + 128], tf.constant([seed, i], tf.int64))
      i += 1
  return model


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--n", type=int, default=300)
  p.add_argument("--epochs", type=int, default=3)
  p.add_argument("--eps", type=float, default=0.1)
  p.add_argument("--loss", default="ce", choices=["ce", "dlr"],
                 help="dlr: only APGD-DLR, ours (XLA off) vs ART's")
  args = p.parse_args()
  d = np.load(common.MNIST10K)
  xtr = (d["x_train"][..., None] / 255).astype(np.float32)
  ytr = d["y_train"].astype(np.int32)
  x = (d["x_test"][:args.n, ..., None] / 255).astype(np.float32)
  y = d["y_test"][:args.n].astype(np.int32)
  t = time.time()
  model = train(xtr, ytr, args.eps, args.epochs)
  print(f"trained in {time.time() - t:.0f}s")
  forward = lambda images: model(images, training=False)  # noqa: E731
  acc = lambda images: float(np.mean(  # noqa: E731
      np.argmax(model.predict(images, verbose=0), -1) == y))
  print(f"clean accuracy {acc(x):.4f} on {args.n} test images")
  rows = []
  runs = ((("apgd-ce", ("apgd-ce",)), ("autoattack-fast", ("apgd-ce", "apgd-t")))
          if args.loss == "ce" else (("apgd-dlr", ("apgd-dlr",)),))
  for name, members in runs:
    for jit in ((False, True) if args.loss == "ce" else (False,)):
      t = time.time()
      autoattack.run(forward, x, y, args.eps, members, seed=0,
                     batch_size=args.n, jit_compile=jit)
      first = time.time() - t
      t = time.time()
      r = autoattack.run(forward, x, y, args.eps, members, seed=1,
                         batch_size=args.n, jit_compile=jit)
      dt = time.time() - t
      rows.append((f"ours {name} xla={'on' if jit else 'off'}", r.robust.mean(),
                   args.n / dt, first))
      print(rows[-1], r.members)
  from art.attacks.evasion import AutoProjectedGradientDescent
  from art.estimators.classification import TensorFlowV2Classifier
  clf = TensorFlowV2Classifier(
      model, nb_classes=10, input_shape=(28, 28, 1), clip_values=(0.0, 1.0),
      loss_object=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  art = AutoProjectedGradientDescent(
      clf, norm=np.inf, eps=args.eps, eps_step=2 * args.eps, max_iter=100,
      nb_random_init=1, batch_size=args.n,
      loss_type={"ce": "cross_entropy", "dlr": "difference_logits_ratio"}[
          args.loss], verbose=False)
  t = time.time()
  x_art = art.generate(x, y=y)
  dt = time.time() - t
  rows.append((f"ART APGD-{args.loss.upper()}", acc(x_art), args.n / dt, dt))
  print(rows[-1], "max |delta|", np.abs(x_art - x).max())
  print("| attack | robust acc | examples/s (2nd run) | 1st run s |")
  print("| --- | --- | --- | --- |")
  for name, a, speed, first in rows:
    print(f"| {name} | {a:.4f} | {speed:.1f} | {first:.1f} |")


if __name__ == "__main__":
  main()
