"""apgd.py: analytic robust accuracy on linear classifiers, the eps-ball and
box, at least PGD-20's strength on a trained model, seeds, the schedule."""
import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn import datasets

from official.attacks import apgd
from official.attacks import pgd
from tests.attacks import linear

EPSILONS = (0.01, 0.02, 0.04)


def test_checkpoint_schedule_is_the_references():
  # 22% first window, shrinking by 3% to at least 6% of 100 iterations.
  assert apgd.schedule(100) == (22, 6, 3)
  assert apgd.schedule(10) == (2, 1, 1)


def test_apgd_ce_reaches_the_analytic_robust_accuracy_on_a_binary_model():
  # Two classes: the CE gradient points along w_y - w_other, the optimum.
  forward, x, y, radius = linear.make(2)
  for eps in EPSILONS:
    analytic = float(np.mean(radius > eps))
    assert 0.0 < analytic < 1.0
    x_adv = apgd.apgd_ce(forward, x, y, eps, seed=[0, 1])
    assert linear.robust_accuracy(forward, x_adv, y) == pytest.approx(analytic)


def test_apgd_t_reaches_the_analytic_robust_accuracy_on_ten_classes():
  forward, x, y, radius = linear.make(10)
  for eps in EPSILONS:
    analytic = float(np.mean(radius > eps))
    assert 0.0 < analytic < 1.0
    x_adv = apgd.apgd_t(forward, x, y, eps, seed=[0, 1])
    assert linear.robust_accuracy(forward, x_adv, y) == pytest.approx(analytic)
    # No attack can beat the analytic optimum; untargeted ones may fall short
    # (CE's gradient mixes the wrong classes), never below.
    for attack in (apgd.apgd_ce, apgd.apgd_dlr):
      got = linear.robust_accuracy(forward, attack(forward, x, y, eps,
                                                   seed=[0, 1]), y)
      assert got >= analytic - 1e-9


def _mlp(seed=0, classes=10):
  keras.utils.set_random_seed(seed)
  return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                           keras.layers.Dense(32, activation="relu"),
                           keras.layers.Dense(classes)])


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_every_attack_stays_in_the_ball_and_the_box(norm):
  model = _mlp()
  # Pixels at and near the box edges, where clipping matters.
  x = tf.round(tf.random.stateless_uniform([16, 8, 8, 1], [3, 4]) * 4) / 4
  y = tf.argmax(model(x), -1, output_type=tf.int32)
  eps = 0.3 if norm == "linf" else 1.0
  for loss in ("ce", "dlr", "dlr-targeted"):
    target = (y + 1) % 10
    x_adv = apgd.apgd(model, x, y, eps, loss=loss, target=target, norm=norm,
                      steps=12, seed=[0, 0]).numpy()
    delta = (x_adv - x.numpy()).reshape(16, -1)
    size = (np.abs(delta).max(1) if norm == "linf"
            else np.sqrt((delta ** 2).sum(1)))
    assert np.all(size <= eps + 1e-5), loss
    assert size.max() > 0.5 * eps  # it did move
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
  x_adv = apgd.apgd_t(model, x, y, eps, norm=norm, steps=5, seed=[0, 0])
  delta = (x_adv.numpy() - x.numpy()).reshape(16, -1)
  assert (np.abs(delta).max() <= eps + 1e-5 if norm == "linf"
          else np.sqrt((delta ** 2).sum(1)).max() <= eps + 1e-5)


def test_rows_the_model_gets_wrong_are_not_attacked():
  forward, x, y, _ = linear.make(10, num_points=8)
  wrong = (y + 1) % 10
  x_adv = apgd.apgd_ce(forward, x, wrong, 0.1, steps=5, seed=[0, 0])
  np.testing.assert_array_equal(x_adv.numpy(), x)


@pytest.fixture(scope="module")
def digits_model():
  """An MLP adversarially trained on digits (FGSM with a random start, Wong
  et al. 2020, eps 0.1, 10 epochs: seconds), so that PGD-20 at the protocol's
  settings leaves about half of the test points robust."""
  d = datasets.load_digits()
  x = (d.images / 16.0).astype("float32")[..., None]
  y = d.target.astype("int32")
  model = _mlp(classes=10)
  optimizer = keras.optimizers.Adam(1e-2)
  eps = 0.1

  def ce(images, labels):
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels, model(tf.clip_by_value(images, 0.0, 1.0))))

  @tf.function
  def step(xb, yb, seed):
    delta = tf.random.stateless_uniform(tf.shape(xb), seed, -eps, eps)
    with tf.GradientTape() as tape:
      tape.watch(delta)
      loss = ce(xb + delta, yb)
    delta = tf.clip_by_value(
        delta + 1.25 * eps * tf.sign(tape.gradient(loss, delta)), -eps, eps)
    with tf.GradientTape() as tape:
      loss = ce(xb + delta, yb)
    optimizer.apply(tape.gradient(loss, model.trainable_variables),
                    model.trainable_variables)

  i = 0
  for _ in range(10):
    for s in range(0, 1400 - 63, 64):
      step(x[s:s + 64], y[s:s + 64], tf.constant([0, i], tf.int64))
      i += 1
  return model, x[1400:1656], y[1400:1656]


def test_apgd_ce_is_at_least_as_strong_as_pgd20(digits_model):
  model, x, y = digits_model
  forward = lambda images: model(images, training=False)  # noqa: E731
  acc = lambda images: float(np.mean(  # noqa: E731
      np.argmax(forward(images).numpy(), -1) == y))
  # PGD-20 with the protocol's settings (eps 0.1, step 0.01, uniform start).
  eps = 0.1
  spec = pgd.AttackSpec("pgd20", "ce", eps, 0.01, 20, "uniform")
  x_pgd, _ = pgd.make_attack(forward, spec)(x, y, [0, 0])
  x_apgd = apgd.apgd_ce(forward, x, y, eps, seed=[0, 0])
  clean, robust_pgd, robust_apgd = acc(x), acc(x_pgd), acc(x_apgd)
  assert robust_pgd < clean
  assert robust_pgd > 0.3  # a comparison with something left to break
  assert robust_apgd <= robust_pgd
  assert np.abs(x_apgd.numpy() - x).max() <= eps + 1e-6


def test_same_seed_same_numbers_and_xla_agrees(digits_model):
  model, x, y = digits_model
  x, y = x[:32], y[:32]
  run = lambda seed, jit=False: apgd.apgd_ce(  # noqa: E731
      model, x, y, 0.05, steps=10, seed=seed, jit_compile=jit).numpy()
  first = run([1, 2])
  np.testing.assert_array_equal(first, run([1, 2]))
  assert not np.array_equal(first, run([1, 3]))
  # XLA rounds differently: a gradient sign near zero may flip, no more.
  xla = run([1, 2], jit=True)
  assert np.mean(np.isclose(first, xla, atol=1e-5)) > 0.99
  predict = lambda images: np.argmax(model(images).numpy(), -1)  # noqa: E731
  np.testing.assert_array_equal(predict(first), predict(xla))


def test_bad_settings_give_one_line_errors():
  forward, x, y, _ = linear.make(3, num_points=4)
  with pytest.raises(ValueError, match="unknown apgd loss 'hinge'; valid: ce"):
    apgd.apgd(forward, x, y, 0.1, loss="hinge", seed=[0, 0])
  with pytest.raises(ValueError, match="needs at least 4 classes, the model "
                     "has 3"):
    apgd.apgd_t(forward, x, y, 0.1, seed=[0, 0])
