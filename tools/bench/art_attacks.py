"""ART's side of the attack sections (ART is not a dependency: the sections
say so and time the project alone when it is missing).

Every contender here is fn() -> (examples, seconds, robust accuracy) on the
images it was made for. ART's AutoAttack has no FAB, and its
`targeted=True` runs *every* listed attack against every other class in
label order; the closest it gets to the standard ensemble (apgd-ce, apgd-t,
fab-t, square) is an explicit list: APGD-CE, then ART's targeted APGD-DLR
against each row's 9 highest other classes (ArtTopTargets), then Square, at
AutoAttack's budgets.
"""
import time

ART_APGD_STEPS = 100
ART_SQUARE_QUERIES = 5000


def classifier(serve, input_shape, num_classes):
  """ART's TensorFlowV2Classifier around an export's `serve`; ImportError
  without ART."""
  import warnings
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from art.estimators.classification import TensorFlowV2Classifier
  import tensorflow as tf
  return TensorFlowV2Classifier(
      model=lambda x, training=False: serve(tf.cast(x, tf.float32)),
      nb_classes=num_classes, input_shape=tuple(input_shape),
      loss_object=tf.keras.losses.SparseCategoricalCrossentropy(
          from_logits=True), clip_values=(0.0, 1.0))


def pgd_run(art_classifier, config, x, y):
  """ART's PGD at the eval config's PGD settings; None without ART."""
  if art_classifier is None:
    return None
  import numpy as np
  from art.attacks.evasion import ProjectedGradientDescent
  attack = ProjectedGradientDescent(
      art_classifier, norm=np.inf, eps=float(config.epsilon),
      eps_step=float(config.pgd_step_size), max_iter=int(config.pgd_steps),
      num_random_init=1, batch_size=100, verbose=False)
  return run(art_classifier, attack, x, y)


def apgd_run(art_classifier, config, x, y):
  """ART's APGD-CE (apgd_attack) at the eval config's eps; None without ART."""
  if art_classifier is None:
    return None
  attack = apgd_attack(art_classifier, float(config.epsilon), 100)
  return run(art_classifier, attack, x, y)


def apgd_attack(art_classifier, eps, batch_size, loss="cross_entropy",
                targeted=False):
  """ART's APGD at AutoAttack's settings: 100 iterations (ART_APGD_STEPS),
  first step 2 eps, one random start."""
  import numpy as np
  from art.attacks.evasion import AutoProjectedGradientDescent
  return AutoProjectedGradientDescent(
      art_classifier, norm=np.inf, eps=eps, eps_step=2 * eps,
      max_iter=ART_APGD_STEPS, targeted=targeted, nb_random_init=1,
      batch_size=batch_size, loss_type=loss, verbose=False)


def run(art_classifier, attack, x, y):
  """fn() -> (examples, seconds, robust accuracy) of an ART attack on x, y."""
  def fn():
    start = time.perf_counter()
    x_adv = attack.generate(x=x, y=y)
    accuracy = float((art_classifier.predict(x_adv, batch_size=100).argmax(-1)
                      == y).mean())
    return len(x), time.perf_counter() - start, accuracy
  return fn


def failure(error):
  """`ART failed: ...`, one line: a third-party failure is said, not a crash."""
  line = (f"ART failed: {type(error).__name__}: "
          f"{str(error).splitlines()[0] if str(error) else ''}")
  if getattr(error, "name", None) == "multiprocess":
    line += (" (ART's AutoAttack imports it, ART does not declare it: pip "
             "install multiprocess)")
  return line


def autoattack_name():
  """What `autoattack` runs, for the printed lines."""
  return (f"ART AutoAttack(attacks=[APGD-CE {ART_APGD_STEPS} it, targeted "
          f"APGD-DLR on each row's top-9 other classes {ART_APGD_STEPS} it "
          f"each, Square {ART_SQUARE_QUERIES} queries p_init 0.8]): no FAB-T "
          "(ART has none)")


class ArtTopTargets:
  """AutoAttack's APGD-T from ART's parts, as one member of ART's AutoAttack.

  ART's targeted APGD-DLR (a row's target is its 2nd, 3rd, ... highest clean
  logit; 9 targets), on the rows no earlier target fooled; a row keeps the
  first image that fools the model. ART's AutoAttack sees an untargeted
  attack (success = the label changed), as AutoAttack's APGD-T is. ART's
  targeted DLR is its untargeted DLR descended toward the target, not
  AutoAttack's targeted DLR (z_y - z_t over z_1 - (z_3 + z_4) / 2).
  """
  targeted = False

  def __init__(self, art_classifier, eps, batch_size, num_targets=9):
    self.classifier = art_classifier
    self.batch_size = batch_size
    self.num_targets = min(num_targets, art_classifier.nb_classes - 1)
    self.apgd = apgd_attack(art_classifier, eps, batch_size,
                            loss="difference_logits_ratio", targeted=True)

  def generate(self, x, y, **kwargs):
    import numpy as np
    labels = y.argmax(-1) if y.ndim == 2 else y
    logits = self.classifier.predict(x, batch_size=self.batch_size)
    ranked = np.argsort(-logits, axis=-1)
    robust = logits.argmax(-1) == labels
    x_adv = x.copy()
    for t in range(1, self.num_targets + 1):
      rows = np.flatnonzero(robust)
      if not len(rows):
        break
      adv = self.apgd.generate(x[rows], y=ranked[rows, t], **kwargs)
      fooled = self.classifier.predict(
          adv, batch_size=self.batch_size).argmax(-1) != labels[rows]
      x_adv[rows[fooled]] = adv[fooled]
      robust[rows[fooled]] = False
    return x_adv


def autoattack(art_classifier, eps, batch_size):
  """ART's AutoAttack with the attacks autoattack_name() lists, in order."""
  import numpy as np
  from art.attacks.evasion import AutoAttack
  from art.attacks.evasion import SquareAttack
  attacks = [apgd_attack(art_classifier, eps, batch_size),
             ArtTopTargets(art_classifier, eps, batch_size),
             SquareAttack(art_classifier, norm=np.inf,
                          max_iter=ART_SQUARE_QUERIES, eps=eps, p_init=0.8,
                          nb_restarts=1, batch_size=batch_size, verbose=False)]
  return AutoAttack(art_classifier, norm=np.inf, eps=eps, eps_step=2 * eps,
                    attacks=attacks, batch_size=batch_size, targeted=False)
