"""autoattack.py: members run on the points still robust, in fixed-size
batches; per-example worst case; analytic robust accuracy on a linear model;
same seed, same numbers; 2 replicas equal 1 device."""
import numpy as np
import pytest
import tensorflow as tf

from official.attacks import autoattack
from tests.attacks import linear


def _forward(images):
  """Class = 1 if the first pixel > 0.5 else 0, as two logits."""
  first = tf.reshape(images, [tf.shape(images)[0], -1])[:, :1]
  return tf.concat([0.5 - first, first - 0.5], -1)


def _fake(fools, seen, mark):
  """A member that flips the first pixel of the rows whose id it `fools`
  (the id is the second pixel times 100), marks them and records what it
  saw."""
  def member(forward, x, y, epsilon, *, seed, jit_compile=False):
    del forward, epsilon, jit_compile
    ids = np.rint(x.numpy()[:, 0, 1, 0] * 100).astype(int)
    seen.append((ids.copy(), x.shape[0], tuple(seed.numpy())))
    hit = np.isin(ids, list(fools))
    adv = x.numpy().copy()
    adv[hit, 0, 0, 0] = 1.0 - adv[hit, 0, 0, 0]
    adv[hit, 0, 2, 0] = mark + len(seen) / 100  # which member, which call
    return tf.constant(adv)
  return member


def test_ensemble_keeps_the_first_success_and_attacks_only_robust_points(
    monkeypatch):
  n = 10
  x = np.zeros((n, 1, 3, 1), np.float32)
  x[:, 0, 1, 0] = np.arange(n) / 100  # ids 0..9
  x[:, 0, 0, 0] = 0.2                 # class 0 ...
  y = np.zeros(n, np.int32)
  y[9] = 1                            # ... so row 9 is misclassified clean
  seen_a, seen_b = [], []
  monkeypatch.setitem(autoattack.MEMBERS, "a", _fake({1, 2, 3}, seen_a, 0.0))
  monkeypatch.setitem(autoattack.MEMBERS, "b", _fake({3, 4, 5, 9}, seen_b, 0.5))
  result = autoattack.run(_forward, x, y, 0.1, ("a", "b"), seed=0,
                          batch_size=4)
  robust = np.ones(n, bool)
  robust[[1, 2, 3, 4, 5, 9]] = False
  np.testing.assert_array_equal(result.robust, robust)
  assert result.clean_accuracy == pytest.approx(0.9)
  assert result.members == pytest.approx({"a": 0.6, "b": 0.4})
  # a sees the 9 clean-correct rows, b only the 6 that a left robust; every
  # call has 4 rows (the last batch repeats its own rows).
  assert [s[1] for s in seen_a + seen_b] == [4] * 5
  np.testing.assert_array_equal(np.concatenate([s[0] for s in seen_a])[:9],
                                [0, 1, 2, 3, 4, 5, 6, 7, 8])
  np.testing.assert_array_equal(seen_a[2][0], [8, 8, 8, 8])
  np.testing.assert_array_equal(np.concatenate([s[0] for s in seen_b]),
                                [0, 4, 5, 6, 7, 8, 7, 8])
  # Row 3 (fooled by both) keeps a's image: a's first call marked it 0.01.
  assert result.x_adv[3, 0, 2, 0] == pytest.approx(0.01)
  assert result.x_adv[4, 0, 2, 0] == pytest.approx(0.51)  # b's 1st call
  # Robust rows and the clean-misclassified row keep their clean image.
  np.testing.assert_array_equal(result.x_adv[[0, 6, 9]], x[[0, 6, 9]])
  # Seeds differ per (batch, member).
  seeds = [s[2] for s in seen_a + seen_b]
  assert len(set(seeds)) == len(seeds)


def test_names_and_unregistered_members(monkeypatch):
  assert autoattack.ENSEMBLES["autoattack"] == ("apgd-ce", "apgd-t", "fab-t",
                                                "square")
  assert autoattack.members_of("autoattack-fast") == ("apgd-ce", "apgd-t")
  monkeypatch.setitem(autoattack.ENSEMBLES, "mine", ("apgd-ce", "nope"))
  with pytest.raises(ValueError, match="attack 'mine' needs member 'nope', "
                     "which is not registered"):
    autoattack.members_of("mine")
  with pytest.raises(ValueError, match="unknown autoattack attack 'apgd'; "
                     "valid: autoattack, autoattack-fast"):
    autoattack.members_of("apgd")


def test_autoattack_fast_reaches_the_analytic_robust_accuracy():
  forward, x, y, radius = linear.make(10, num_points=120, seed=1)
  for eps in (0.01, 0.02):
    analytic = float(np.mean(radius > eps))
    assert 0.0 < analytic < 1.0
    result = autoattack.run(forward, x, y, eps, ("apgd-ce", "apgd-t"),
                            seed=0, batch_size=50)
    assert result.robust.mean() == pytest.approx(analytic)
    assert result.members["apgd-t"] <= result.members["apgd-ce"]
    np.testing.assert_array_equal(
        np.argmax(forward(result.x_adv).numpy(), -1) == y, result.robust)
    assert np.abs(result.x_adv - x).max() <= eps + 1e-6


@pytest.mark.parametrize("jit_compile", [False, True])
def test_two_replicas_equal_one_device_and_seeds_repeat(jit_compile):
  forward, x, y, _ = linear.make(10, num_points=40, seed=2)
  members = ("apgd-ce", "apgd-t")
  strategy = tf.distribute.MirroredStrategy(["CPU:0", "CPU:1"])
  run = lambda s=None, seed=0: autoattack.run(  # noqa: E731
      forward, x, y, 0.015, members, seed=seed, batch_size=16, strategy=s,
      jit_compile=jit_compile)
  one, two = run(), run(strategy)
  assert strategy.num_replicas_in_sync == 2
  np.testing.assert_array_equal(one.robust, two.robust)
  np.testing.assert_allclose(one.x_adv, two.x_adv, atol=1e-6)
  assert one.members == two.members
  assert 0.0 < one.robust.mean() < one.clean_accuracy
  if jit_compile:
    return
  again = run()
  np.testing.assert_array_equal(one.x_adv, again.x_adv)
  # The random starts matter here (so replicas do draw the same starts).
  assert np.abs(run(seed=1).x_adv - one.x_adv).max() > 0.01


def test_standard_autoattack_reaches_the_analytic_robust_accuracy():
  """All four members (APGD-CE, APGD-T, FAB-T, Square) on a linear model whose
  minimal L-inf perturbation is known: the ensemble's robust set is exactly
  the analytic one, and every member's cumulative accuracy is at least it."""
  forward, x, y, radius = linear.make(10, num_points=60, seed=2)
  eps = 0.02
  analytic = float(np.mean(radius > eps))
  assert 0.0 < analytic < 1.0
  result = autoattack.run(forward, x, y, eps, autoattack.ENSEMBLES["autoattack"],
                          seed=0, batch_size=30)
  np.testing.assert_array_equal(result.robust, radius > eps)
  cumulative = list(result.members.values())
  assert cumulative == sorted(cumulative, reverse=True)
  assert cumulative[-1] == pytest.approx(analytic)
