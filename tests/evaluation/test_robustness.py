"""robustness.py: the summary statistics by hand; an attack's numbers do not
depend on the other attacks evaluated beside it; robust <= clean accuracy."""
import keras
import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from official.attacks import autoattack
from official.evaluation import cross_attack
from official.evaluation import robustness


def test_summarize_by_hand():
  labels = [0, 0, 1, 1, 1, 2, 2, 2, 2, 2]
  correct = [1, 0, 1, 1, 1, 0, 0, 1, 0, 0]
  s = robustness.summarize(correct, labels, num_classes=4, tail_fraction=0.3)
  assert s["accuracy"] == pytest.approx(0.5)
  assert s["per_class"][:3] == pytest.approx([0.5, 1.0, 0.2])
  assert np.isnan(s["per_class"][3])  # absent class: left out of the minimum
  assert s["worst_class"] == pytest.approx(0.2)
  # 30% of the 3 present classes rounds to 1 class: the weakest.
  assert s["tail"] == pytest.approx(0.2)
  s = robustness.summarize(correct, labels, num_classes=3, tail_fraction=0.67)
  assert s["tail"] == pytest.approx((0.2 + 0.5) / 2)


def _eval_cfg(attacks):
  return ml_collections.ConfigDict({
      # A radius where random starts matter (robust accuracy ~0.7).
      "attacks": attacks, "epsilon": 0.1, "pgd_step_size": 0.025,
      "pgd_steps": 2, "cw_step_size": 0.05, "cw_steps": 5, "cw_confidence": 50.0,
      "train_step_size": 0.05, "restarts": 1, "tail_fraction": 0.3,
      "max_examples": 0})


def test_an_attack_does_not_depend_on_its_neighbours():
  keras.utils.set_random_seed(0)
  model = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Flatten(),
                            keras.layers.Dense(3)])
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(64, 6, 6, 1)).astype(np.float32)
  # Labels the model gets right, so that attacks have something to break.
  labels = np.argmax(model(images).numpy(), -1).astype(np.int32)
  data = tf.data.Dataset.from_tensor_slices(
      {"image": images, "label": labels}).batch(32)
  run = lambda attacks: robustness.evaluate(  # noqa: E731
      lambda x: model(x), data, _eval_cfg(attacks), 3, seed=1, verbose=0)
  alone = run(("pgd20",))
  crowded = run(("natural", "fgsm", "cw", "pgd20", "kl10"))
  np.testing.assert_array_equal(alone["pgd20"]["per_class"],
                                crowded["pgd20"]["per_class"])
  assert crowded["natural"]["accuracy"] == 1.0
  assert crowded["pgd20"]["accuracy"] < crowded["natural"]["accuracy"]
  # Random starts do matter here: another evaluation seed, another result.
  other = robustness.evaluate(lambda x: model(x), data, _eval_cfg(("pgd20",)),
                              3, seed=2, verbose=0)
  assert other["pgd20"]["accuracy"] != alone["pgd20"]["accuracy"]


def _ten_class_data(n=40, batch=16, seed=0):
  keras.utils.set_random_seed(seed)
  model = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Flatten(),
                            keras.layers.Dense(10)])
  rng = np.random.default_rng(seed)
  images = rng.uniform(size=(n, 6, 6, 1)).astype(np.float32)
  labels = np.argmax(model(images).numpy(), -1).astype(np.int32)
  labels[:3] = (labels[:3] + 1) % 10  # a few clean mistakes
  data = tf.data.Dataset.from_tensor_slices(
      {"image": images, "label": labels}).batch(batch)
  return model, data


def _aa_cfg(attacks, **overrides):
  cfg = _eval_cfg(attacks)
  cfg.epsilon = 0.02
  cfg.autoattack_max_examples = 0
  cfg.update(overrides)
  return cfg


def test_autoattack_names_share_the_summary_schema_and_their_bound(capsys):
  model, data = _ten_class_data()
  cfg = _aa_cfg(("natural", "apgd-ce", "autoattack-fast", "pgd20"),
                autoattack_max_examples=24)
  results = robustness.evaluate(lambda x: model(x), data, cfg, 10, seed=0)
  assert list(results) == ["natural", "apgd-ce", "autoattack-fast", "pgd20"]
  assert results["natural"]["num_examples"] == 40
  fast, ce = results["autoattack-fast"], results["apgd-ce"]
  for r in (fast, ce):
    assert r["num_examples"] == 24
    assert set(r) >= {"accuracy", "per_class", "worst_class", "tail",
                      "num_examples", "attack"}
    assert r["clean_accuracy"] == pytest.approx(21 / 24)
  assert fast["attack"]["members"] == ["apgd-ce", "apgd-t"]
  assert fast["attack"]["epsilon"] == pytest.approx(0.02)
  assert list(fast["members"]) == ["apgd-ce", "apgd-t"]
  assert "members" not in ce
  # Same images, same seed: the ensemble's first member is apgd-ce itself.
  assert fast["members"]["apgd-ce"] == pytest.approx(ce["accuracy"])
  assert fast["accuracy"] == pytest.approx(fast["members"]["apgd-t"])
  assert fast["accuracy"] <= ce["accuracy"] < fast["clean_accuracy"]
  # cross_attack groups them by loss: apgd-ce is a CE attack, the ensemble
  # is unseen; neither is taken for the natural accuracy.
  assert ce["attack"]["loss"] == "ce"
  groups = cross_attack.group(results, ["ce"])
  assert groups["natural"] == results["natural"]["accuracy"]
  assert set(groups["seen"]) == {"apgd-ce", "pgd20"}
  assert set(groups["unseen"]) == {"autoattack-fast"}
  # The batch loop's bar knows its 3 batches (40 examples by 16).
  assert "3/3" in capsys.readouterr().out
  # PGD-20 and natural on the same first 24 images as the AutoAttack names:
  # by hand from a PGD-20-only evaluation of those 24.
  first = robustness.evaluate(lambda x: model(x), data.unbatch().take(24).batch(16),
                              _aa_cfg(("natural", "pgd20")), 10, seed=0)
  assert fast["same_images"]["natural"] == pytest.approx(21 / 24)
  assert fast["same_images"]["pgd20"] == pytest.approx(
      first["pgd20"]["accuracy"])
  assert ce["same_images"] == fast["same_images"]
  assert "same_images" not in results["pgd20"]


def test_evaluation_under_two_replicas_equals_one_device():
  # 40 examples by 16: the last batch (8) is padded; AA re-batches by 16.
  model, data = _ten_class_data()
  cfg = _aa_cfg(("natural", "pgd20", "autoattack-fast"))
  one = robustness.evaluate(lambda x: model(x), data, cfg, 10, seed=3,
                            verbose=0)
  strategy = tf.distribute.MirroredStrategy(["CPU:0", "CPU:1"])
  two = robustness.evaluate(lambda x: model(x), data, cfg, 10, seed=3,
                            verbose=0, strategy=strategy)
  for name in cfg.attacks:
    np.testing.assert_array_equal(one[name]["per_class"],
                                  two[name]["per_class"])
  assert one["autoattack-fast"]["members"] == two["autoattack-fast"]["members"]
  assert one["pgd20"]["accuracy"] < one["natural"]["accuracy"]
  # The last, padded batch counts its 8 real rows only.
  assert one["pgd20"]["num_examples"] == 40


def test_unknown_or_unregistered_autoattack_names(monkeypatch):
  # Every AA name is an EVAL_ATTACKS entry (what tools check for).
  assert {"apgd-ce", "apgd-dlr", "apgd-t", "fab-t", "square", "autoattack",
          "autoattack-fast"} <= set(robustness.EVAL_ATTACKS)
  monkeypatch.delitem(autoattack.MEMBERS, "fab-t", raising=False)
  with pytest.raises(ValueError, match="attack 'autoattack' needs member "
                     "'fab-t'"):
    robustness.attack_specs(_aa_cfg(("pgd20", "autoattack")))
  with pytest.raises(ValueError, match="unknown eval attack 'aa' in "
                     "eval.attacks; valid: .*autoattack-fast"):
    robustness.attack_specs(_aa_cfg(("aa",)))


def test_evaluating_a_model_again_reuses_its_trace():
  """A second evaluate() of the same model and attacks reuses the traced
  per-batch function (tools.evaluate calls it once per batch), with the same
  numbers; another seed gets its own."""
  model, data = _ten_class_data()
  forward = lambda x: model(x)  # noqa: E731
  cfg = _aa_cfg(("natural", "pgd20"))
  first = robustness.evaluate(forward, data, cfg, 10, seed=0, verbose=0)
  cached = robustness._BATCH_FUNCTIONS[forward]
  assert len(cached) == 1
  call = next(iter(cached.values()))
  again = robustness.evaluate(forward, data, cfg, 10, seed=0, verbose=0)
  assert next(iter(cached.values())) is call
  for name in cfg.attacks:  # per_class holds NaN for absent classes
    np.testing.assert_array_equal(again[name]["per_class"],
                                  first[name]["per_class"])
  assert first["pgd20"]["accuracy"] < first["natural"]["accuracy"]
  other = robustness.evaluate(forward, data, cfg, 10, seed=1, verbose=0)
  assert len(cached) == 2
  assert other["natural"]["accuracy"] == first["natural"]["accuracy"]


def test_margins_by_hand_and_kept_per_example():
  logits = tf.constant([[3.0, 1.0, 2.0], [0.0, 4.0, 1.0], [1.0, 1.0, 0.0]])
  labels = tf.constant([0, 2, 1])
  # 3 − 2; 1 − 4; a tie: 1 − 1 = 0.
  np.testing.assert_allclose(
      robustness.logit_margins(logits, labels).numpy(), [1.0, -3.0, 0.0])
  s = robustness.margin_summary(np.array([-2.0, -0.5, 0.5, 3.0]))
  assert s["fraction_negative"] == 0.5 and s["fraction_within_1"] == 0.5
  assert s["quantiles"]["0.5"] == pytest.approx(0.0)
  assert sum(s["histogram"]["counts"]) == 4
  # In an evaluation: natural margins are the logit margins of the clean
  # images, and an attack lowers them.
  keras.utils.set_random_seed(0)
  model = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Flatten(),
                            keras.layers.Dense(3)])
  images = np.random.default_rng(0).uniform(size=(32, 6, 6, 1)).astype(np.float32)
  y = np.argmax(model(images).numpy(), -1).astype(np.int32)
  data = tf.data.Dataset.from_tensor_slices({"image": images, "label": y}).batch(16)
  out = robustness.evaluate(lambda x: model(x), data,
                            _eval_cfg(("natural", "pgd20")), 3, verbose=0,
                            keep_margins=True)
  np.testing.assert_allclose(
      out["natural"]["margin_values"],
      robustness.logit_margins(model(images), y).numpy(), rtol=1e-5)
  assert (out["natural"]["margin_values"] > 0).all()
  assert out["pgd20"]["margin_values"].mean() < out["natural"]["margin_values"].mean()
  assert out["pgd20"]["margin"]["fraction_negative"] == pytest.approx(
      1 - out["pgd20"]["accuracy"])


def test_logit_scaled_pgd_is_the_worst_case_over_its_scales():
  keras.utils.set_random_seed(0)
  model = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Flatten(),
                            keras.layers.Dense(3)])
  images = np.random.default_rng(1).uniform(size=(64, 6, 6, 1)).astype(np.float32)
  y = np.argmax(model(images).numpy(), -1).astype(np.int32)
  data = tf.data.Dataset.from_tensor_slices({"image": images, "label": y}).batch(32)
  cfg = _eval_cfg(("pgd20-lsa",))
  cfg.lsa_scales = (0.1, 10.0)
  out = robustness.evaluate(lambda x: model(x), data, cfg, 3, seed=1,
                            verbose=0)["pgd20-lsa"]
  assert set(out["per_scale"]) == {"0.1", "10"}
  assert out["accuracy"] <= min(out["per_scale"].values())
  assert [m["logit_scale"] for m in out["attack"]["members"]] == [0.1, 10.0]
  # One scale alone equals its member's accuracy in the ensemble.
  cfg.lsa_scales = (10.0,)
  alone = robustness.evaluate(lambda x: model(x), data, cfg, 3, seed=1,
                              verbose=0)["pgd20-lsa"]
  assert alone["accuracy"] == pytest.approx(out["per_scale"]["10"])
