r"""RoBal's loss and deployed logits: this library vs the official PyTorch code.

One batch (features of x and x̃, labels, CIFAR-10-LT ρ = 50 class counts) and
one cosine-head weight matrix, fed to both sides:
  ours      official/modeling/heads.py CosineHead + official/reweighting/
            robal.py (the "adv" and "kl" terms, mean over the batch; the
            deployed logits of RoBal-N)
  official  `wutong16/Adversarial_Long-Tail` @ab2f3a7, loaded from a checkout
            given by --official (nothing of it is in this repository):
            methods/train_modes.py add_reg_train (its loss, with a stand-in
            model whose forward is the official CosPlus_Classifier on the
            given features: 0 PGD steps, so x̃'s features are the given ones),
            methods/losses_inclass.py MultiMarginLoss, and
            models/classifiers/basic_classifiers.py PostProc_Classifier.
The official code calls .cuda(); the loader maps it to the CPU.

  # 1. our numbers (the project's venv):
  python docs/measurements/robal_vs_official.py --save=/tmp/robal_ours.npz
  # 2. the official code on the same inputs (a PyTorch venv):
  git --git-dir=<snapshot of wutong16/Adversarial_Long-Tail> archive HEAD \
      | tar -x -C /tmp/Adversarial_Long-Tail
  /work/torchvenv/bin/python docs/measurements/robal_vs_official.py \
      --compare=/tmp/robal_ours.npz --official=/tmp/Adversarial_Long-Tail
"""
import argparse
import importlib.util
import os
import sys

import numpy as np

VARIANTS = {"N": dict(margin=0.1, tau_m=0.0, tau_b=1.2, tau_p=0.1),
            "R": dict(margin=0.1, tau_m=0.3, tau_b=1.5, tau_p=0.0)}
SCALE, GAMMA, BETA = 10.0, 0.03125, 6.0


def inputs(seed=0, batch=64, dim=640, classes=10):
  rng = np.random.RandomState(seed)
  counts = np.array([int(5000 * 50 ** (-c / 9)) for c in range(classes)])
  return {
      # ReLU-like features (non-negative), x̃'s a perturbed copy of x's.
      "f_nat": np.abs(rng.randn(batch, dim)).astype(np.float32),
      "f_adv": None,
      "labels": rng.randint(0, classes, batch).astype(np.int64),
      "counts": counts,
      "weight": rng.uniform(-1 / np.sqrt(dim), 1 / np.sqrt(dim),
                            (dim, classes)).astype(np.float32),
      "rng": rng,
  }


def ours(path):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__)))))
  import tensorflow as tf
  from configs import robal as robal_config
  from official.modeling import heads
  from official.reweighting import robal

  d = inputs()
  rng = d.pop("rng")
  d["f_adv"] = np.abs(d["f_nat"] + 0.5 * rng.randn(*d["f_nat"].shape)
                      ).astype(np.float32)
  head = heads.CosineHead(len(d["counts"]), GAMMA)
  head.build((None, d["f_nat"].shape[1]))
  head.kernel.assign(d["weight"])
  z_nat, z_adv = head(tf.constant(d["f_nat"])), head(tf.constant(d["f_adv"]))
  out = dict(d, z_nat=z_nat.numpy(), z_adv=z_adv.numpy())
  for name, values in VARIANTS.items():
    c = robal_config.get_config(name)
    data = type("Data", (), {"class_counts": d["counts"]})
    method = robal.RoBal(c.reweighting, config=c, data=data)
    ctx = type("Ctx", (), {})()
    ctx.adversarial_logits, ctx.primary_attack = {"p": z_adv}, "p"
    ctx.natural_logits = z_nat
    ctx.labels = tf.constant(d["labels"], tf.int32)
    terms = method.extra_terms(ctx)
    out[f"{name}_loss"] = float(tf.reduce_mean(terms["adv"] + terms["kl"]))
    out[f"{name}_adv"] = float(tf.reduce_mean(terms["adv"]))
    out[f"{name}_kl"] = float(tf.reduce_mean(terms["kl"]))
    out[f"{name}_deployed"] = np.asarray(method.inference_logits(z_nat))
    assert (values["tau_b"], values["tau_m"]) == (c.reweighting.tau_b,
                                                  c.reweighting.tau_m)
  np.savez(path, **out)
  print(f"saved {path}: " + ", ".join(
      f"{k} {out[k]:.6f}" for k in sorted(out)
      if k.endswith(("_loss", "_adv", "_kl"))))


def _load_official(root):
  """The official modules, with .cuda() mapped to the CPU."""
  import torch
  torch.Tensor.cuda = lambda self, *a, **k: self
  torch.nn.Module.cuda = lambda self, *a, **k: self
  torch.cuda.FloatTensor = torch.FloatTensor
  sys.path.insert(0, root)
  from methods import losses_inclass, train_modes  # noqa: E402
  spec = importlib.util.spec_from_file_location(
      "basic_classifiers",
      os.path.join(root, "models", "classifiers", "basic_classifiers.py"))
  classifiers = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(classifiers)
  return losses_inclass, train_modes, classifiers


def official(path, root):
  import torch
  losses_inclass, train_modes, classifiers = _load_official(root)
  d = dict(np.load(path))
  counts = d["counts"]
  classes, dim = len(counts), d["f_nat"].shape[1]
  f_nat, f_adv = torch.tensor(d["f_nat"]), torch.tensor(d["f_adv"])
  labels = torch.tensor(d["labels"])
  weight = torch.tensor(d["weight"].T.copy())        # torch: [C, D]
  report = []

  def close(name, a, b, tol=1e-5):
    err = float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
    report.append((name, err))
    print(f"{name:<28} max |ours - official| = {err:.2e}"
          + ("" if err <= tol else "   <-- DIFFERS"))

  cos = classifiers.CosPlus_Classifier(classes, dim, scale=1, gamma=GAMMA)
  cos.weight.data = weight.clone()
  cos.eval()
  with torch.no_grad():
    close("cosine logits z(x)", d["z_nat"], cos(f_nat).numpy())
    close("cosine logits z(x~)", d["z_adv"], cos(f_adv).numpy())

  for name, v in VARIANTS.items():
    class Stand(torch.nn.Module):
      """add_reg_train's model: x -> CosPlus(features of x)."""

      def __init__(self):
        super().__init__()
        self.num_classes = classes
        self.classifier = cos
        self.loss = losses_inclass.Losses(counts, classes, {"MultiMargin": {
            "m": v["margin"], "s": SCALE, "tau_b": v["tau_b"],
            "tau_m": v["tau_m"]}})
        self.adv_loss = losses_inclass.Losses(counts, classes, None)
        self.nat_loss = losses_inclass.Losses(counts, classes, None)

      def forward(self, x):
        # x is x (natural) or x̃ (its one-sided random start; 0 PGD steps).
        natural = bool(torch.equal(x, x_nat))
        return self.classifier(f_nat if natural else f_adv)

    x_nat = torch.full((len(labels), 1), 0.25)
    model = Stand()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    loss = train_modes.add_reg_train(
        model, x_nat, labels, optimizer, step_size=0.0078, epsilon=0.031,
        perturb_steps=0, beta_adv=1.0, beta_nat=0.0, beta_reg=BETA,
        reg_opt="trades")
    adv = model.loss(cos(f_adv), labels)
    close(f"RoBal-{name} loss (adv + 6 KL)", d[f"{name}_loss"], loss.item())
    close(f"RoBal-{name} MultiMarginLoss", d[f"{name}_adv"], adv.item())
    print(f"   ours {d[f'{name}_loss']:.6f}  official {loss.item():.6f}")
    if name == "N":
      post = classifiers.PostProc_Classifier(
          classes, dim, samples_per_cls=counts, tau_p=v["tau_p"],
          posthoc=True, classifier="Cos", scale=SCALE, gamma=GAMMA)
      post.weight = torch.nn.Parameter(weight.clone())
      with torch.no_grad():
        close("RoBal-N deployed logits", d["N_deployed"],
              post(f_nat).numpy(), tol=1e-4)
  worst = max(err for _, err in report)
  print(f"worst difference {worst:.2e}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--save", help="write our numbers to this .npz")
  parser.add_argument("--compare", help="our .npz to check")
  parser.add_argument("--official", help="checkout of Adversarial_Long-Tail")
  args = parser.parse_args()
  if args.save:
    ours(args.save)
  elif args.compare and args.official:
    official(args.compare, args.official)
  else:
    parser.error("give --save, or --compare and --official")


if __name__ == "__main__":
  main()
