"""Examples/s of Square and FAB-T (XLA on / off) beside ART's SquareAttack.

The measurement behind the README's ART cross-check table. A tiny CNN is trained naturally for a few epochs on the
mnist10k train split; the first N test images are attacked at one eps by
  ours: official.attacks.square.square and official.attacks.fab.fab_t,
        each with jit_compile False and True (the first call of each
        compiles and is timed separately, as "first call");
  ART:  art.attacks.evasion.SquareAttack (L-inf, same eps, p_init, queries)
        on art.estimators.classification.TensorFlowV2Classifier of the same
        Keras model.
Robust accuracy = fraction of the N images still classified correctly.

  python docs/measurements/fabsquare_bench.py --n=200 --eps=0.1 --queries=5000
"""
import argparse
import time

import keras
import numpy as np
import tensorflow as tf

from configs import common  # MNIST10K: ../shared/data beside the checkout
from official.attacks import fab
from official.attacks import pgd
from official.attacks import square


def tiny_cnn(seed=0):
  keras.utils.set_random_seed(seed)
  return keras.Sequential([
      keras.Input((28, 28, 1)),
      keras.layers.Conv2D(16, 3, strides=2, activation="relu"),
      keras.layers.Conv2D(32, 3, strides=2, activation="relu"),
      keras.layers.Flatten(),
      keras.layers.Dense(64, activation="relu"),
      keras.layers.Dense(10)])


def timed(fn):
  start = time.perf_counter()
  out = fn()
  out = out.numpy() if hasattr(out, "numpy") else out
  return out, time.perf_counter() - start


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--n", type=int, default=200)
  parser.add_argument("--eps", type=float, default=0.1)
  parser.add_argument("--queries", type=int, default=5000)
  parser.add_argument("--fab_steps", type=int, default=100)
  parser.add_argument("--epochs", type=int, default=3)
  parser.add_argument("--skip_art", action="store_true")
  args = parser.parse_args()

  data = np.load(common.MNIST10K)
  x_train = (data["x_train"] / 255.0).astype("float32")[..., None]
  x_test = (data["x_test"][:args.n] / 255.0).astype("float32")[..., None]
  y_train = data["y_train"].astype("int32")
  y_test = data["y_test"][:args.n].astype("int32")
  model = tiny_cnn()
  model.compile(keras.optimizers.Adam(1e-3),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  model.fit(x_train, y_train, epochs=args.epochs, batch_size=128, verbose=0)
  forward = lambda x: model(x, training=False)  # noqa: E731

  def robust(x_adv):
    return float(np.mean(np.argmax(model.predict(x_adv, verbose=0), -1)
                         == y_test))

  print(f"n={args.n} eps={args.eps} queries={args.queries} "
        f"fab_steps={args.fab_steps} clean={robust(x_test):.3f}")
  seed = pgd.stateless_seed(0, 0, "square")
  ours = {
      "square": lambda jit: square.square(forward, x_test, y_test, args.eps,
                                          seed=seed, jit_compile=jit,
                                          n_queries=args.queries),
      "fab-t": lambda jit: fab.fab_t(forward, x_test, y_test, args.eps,
                                     seed=seed, jit_compile=jit,
                                     steps=args.fab_steps),
  }
  rows = []
  for name, attack in ours.items():
    for jit in (False, True):
      _, first = timed(lambda: attack(jit))  # the first call traces
      x_adv, t = timed(lambda: attack(jit))
      rows.append((f"{name} (ours, xla={jit})", robust(x_adv), t, first))
  if not args.skip_art:
    from art.attacks.evasion import SquareAttack
    from art.estimators.classification import TensorFlowV2Classifier
    clf = TensorFlowV2Classifier(
        model, nb_classes=10, input_shape=(28, 28, 1), clip_values=(0.0, 1.0),
        loss_object=keras.losses.SparseCategoricalCrossentropy(
            from_logits=True))
    attack = SquareAttack(clf, norm=np.inf, eps=args.eps,
                          max_iter=args.queries, p_init=0.8, nb_restarts=1,
                          batch_size=args.n, verbose=False)
    x_adv, t = timed(lambda: attack.generate(x_test, y=y_test))
    rows.append(("square (ART 1.20.1)", robust(x_adv), t, float("nan")))
  print(f"{'attack':28s} {'robust':>7s} {'seconds':>8s} {'ex/s':>8s} "
        f"{'first call s':>12s}")
  for name, acc, t, first in rows:
    print(f"{name:28s} {acc:7.3f} {t:8.2f} {args.n / t:8.1f} {first:12.2f}")


if __name__ == "__main__":
  tf.get_logger().setLevel("ERROR")
  main()
