r"""ARoW's and WEAT's training losses against their official PyTorch code.

Same batch, same weights -> the same loss. Two sides, two interpreters:

  # 1. ours (the project's venv): a linear model on 8x8 images, a batch and
  #    its adversarial version; the loss as official/core/trainer.py forms it
  #    (objective terms + the method's extra terms and weights, Σ c·w·ℓ / B).
  .venv/bin/python docs/measurements/arow_weat_official_check.py --side=ours \
      --npz=/tmp/arow_weat_check.npz
  # 2. official (a PyTorch venv): the same model and batch through ARoW's
  #    `loss.py: ARoW_loss / ARoW_CE_loss` and WEAT's
  #    `WEAT_loss.py: WEAT_nat / WEAT_adv`, read from checkouts of the
  #    official repositories (dyoony/ARoW, OmnAI-Lab/Robust-Classifiers-
  #    under-the-lens-of-EBM); prints both losses and their difference.
  /work/torchvenv/bin/python docs/measurements/arow_weat_official_check.py \
      --side=official --npz=/tmp/arow_weat_check.npz \
      --arow=/tmp/official/arow --weat="/tmp/official/weat/Adversarial ML"

WEAT's functions run their own attack; with `perturb_steps=0` they use
x + 0.001·randn(x.shape): torch.randn is replaced by (x̃ − x)/0.001 so that
its x̃ is ours, and `.cuda()` by the identity (a CPU machine). No official
code is part of this project: it is imported from the given checkouts.
"""
import argparse
import sys

import numpy as np

CASES = {  # name: (config, presets, official function, its β / λ)
    "arow": ("arow", "", "ARoW_loss", 7.0),
    "arow-ce": ("arow", "ce", "ARoW_CE_loss", 7.0),
    "weat-nat": ("weat", "", "WEAT_nat", 6.0),
    "weat-adv": ("weat", "adv", "WEAT_adv", 6.0),
}
SHAPE, CLASSES, BATCH, EPS = (8, 8, 1), 10, 16, 0.1


def batch(seed=0):
  rng = np.random.default_rng(seed)
  x = rng.uniform(size=(BATCH, *SHAPE)).astype(np.float32)
  x_adv = np.clip(x + rng.uniform(-EPS, EPS, x.shape), 0, 1).astype(np.float32)
  w = rng.normal(0, 0.5, (int(np.prod(SHAPE)), CLASSES)).astype(np.float32)
  b = rng.normal(0, 0.1, CLASSES).astype(np.float32)
  y = rng.integers(0, CLASSES, BATCH).astype(np.int32)
  return x, x_adv, y, w, b


def ours(npz):
  import importlib
  import os
  import types
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__)))))
  import tensorflow as tf
  from official.modeling import objectives
  from official.reweighting import base
  from official.reweighting import registry
  x, x_adv, y, w, b = batch()
  weight = tf.Variable(w)
  logits = lambda v: tf.reshape(v, [BATCH, -1]) @ weight + b  # noqa: E731
  losses, grads = {}, {}
  for name, (config_name, presets, _, _) in CASES.items():
    tape = tf.GradientTape()
    tape.__enter__()
    nat, adv = logits(x), logits(x_adv)
    config = importlib.import_module(f"configs.{config_name}").get_config(presets)
    objective = objectives.get_objective(config.objective.name)
    data = types.SimpleNamespace(num_ids=BATCH, train_ids=np.arange(BATCH))
    method = registry.build_method(config.reweighting, config=config, data=data)
    method.build_state()
    ctx = base.StepContext(
        images=x, labels=tf.constant(y), ids=tf.range(BATCH),
        epoch=tf.constant(0), step=tf.constant(0, tf.int64),
        global_batch_size=BATCH, attack=None, natural_logits=nat,
        adversarial_logits={"train": adv}, primary_attack="train")
    # The trainer's loss (official/core/trainer.py, step 4).
    ctx.terms = dict(objective.terms(
        y, nat, adv, label_smoothing=config.objective.label_smoothing))
    ctx.terms.update(method.extra_terms(ctx))
    weights = {k: tf.stop_gradient(v)  # constants, as the trainer makes them
               for k, v in method.weights(ctx).items()}
    coefficients = objective.coefficients(config.objective)
    total = sum(coefficients.get(k, 1.0) * tf.reduce_sum(
        weights.get(k, 1.0) * term) for k, term in ctx.terms.items())
    loss = total / BATCH
    tape.__exit__(None, None, None)
    losses[name] = float(loss)
    # The gradient the update takes (WEAT's weights are constants, ARoW's not).
    grads[name] = tape.gradient(loss, weight).numpy()
  np.savez(npz, x=x, x_adv=x_adv, y=y, w=w, b=b,
           **{f"loss_{k}": v for k, v in losses.items()},
           **{f"grad_{k}": v for k, v in grads.items()})
  for k, v in losses.items():
    print(f"{k:9s} ours {v:.8f}")


def official(npz, arow_dir, weat_dir):
  import types
  import torch
  # WEAT_loss.py imports torchvision without using it in the loss; a
  # torchvision wheel does not load beside this CPU torch, so a stub stands in.
  sys.modules.setdefault("torchvision", types.ModuleType("torchvision"))
  sys.path[:0] = [arow_dir, weat_dir]
  import loss as arow_loss  # dyoony/ARoW loss.py
  import WEAT_loss as weat_loss  # Adversarial ML/WEAT_loss.py
  d = np.load(npz)
  x = torch.tensor(d["x"]).permute(0, 3, 1, 2)  # NCHW, as torch models take
  x_adv = torch.tensor(d["x_adv"]).permute(0, 3, 1, 2)
  y = torch.tensor(d["y"]).long()
  w, b = torch.tensor(d["w"], requires_grad=True), torch.tensor(d["b"])

  def model(v):  # our NHWC flattening order, on NCHW input
    return v.permute(0, 2, 3, 1).reshape(v.shape[0], -1) @ w + b
  model.eval = model.train = lambda: None
  torch.Tensor.cuda = lambda self, *a, **k: self
  original_randn = torch.randn
  torch.randn = lambda *a, **k: (x_adv - x) / 0.001
  for name, (_, presets, function, beta) in CASES.items():
    if name.startswith("arow"):
      args = (x, x_adv, y, model) + ((0.2,) if function == "ARoW_loss" else ())
      sup, rob = getattr(arow_loss, function)(*args)
      loss = sup + beta * rob
    else:
      optimizer = type("NoOptimizer", (), {"zero_grad": lambda self: None})()
      loss = getattr(weat_loss, function)(
          model, x, y, optimizer, perturb_steps=0, epsilon=EPS, beta=beta)
    grad, = torch.autograd.grad(loss, w)
    theirs, mine = float(loss.detach()), float(d[f"loss_{name}"])
    grad_diff = np.abs(grad.numpy() - d[f"grad_{name}"]).max()
    print(f"{name:9s} official {theirs:.8f}  ours {mine:.8f}  "
          f"|diff| {abs(theirs - mine):.2e}  max |grad diff| {grad_diff:.2e} "
          f"(max |grad| {np.abs(grad.numpy()).max():.2e})")
  torch.randn = original_randn


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--side", choices=("ours", "official"), required=True)
  parser.add_argument("--npz", required=True)
  parser.add_argument("--arow", help="checkout of dyoony/ARoW")
  parser.add_argument("--weat", help="its 'Adversarial ML' folder")
  args = parser.parse_args()
  if args.side == "ours":
    ours(args.npz)
  else:
    official(args.npz, args.arow, args.weat)


if __name__ == "__main__":
  main()
