r"""FRL, WAT and CFA: one epoch's update against the official codes (PyTorch).

  /work/main/.venv/bin/python docs/measurements/fairness_official_check.py \
      --official=/tmp/official --torch_python=/work/torchvenv/bin/python

`--official` holds checkouts of hannxu123/fair_robust @a80547d (fair_robust/),
PKU-ML/CFA @071f333 (CFA/) and boqili/WAT @62d1184 (WAT/), e.g.
`git --git-dir=MIRROR archive HEAD | tar -x -C /tmp/official/WAT`. The
official side runs in a separate interpreter with PyTorch (never a project
dependency) and imports the official code from those checkouts; no official
code is copied into this file:
  FRL  utils_frl.frl_train (Reweight) and utils_frl2.frl_train (Remargin),
       the official functions, with their `evaluate` replaced by the given
       per-class errors and their `train_model` by a recorder of the class
       weights it receives; utils_frl2.in_class for the per-class accuracy.
  WAT  the Hedge update is inline in worst_class_adversarial_train.py: its
       lines 244-248 are read from the checkout (their first tokens checked)
       and executed on the given per-class validation costs.
  CFA  CCM / CCR inline in train.py lines 196-208 and the FAWA gate lines
       249-257, executed the same way, with utils.weight_average imported
       (torchvision, which utils.py imports but does not use here, stubbed).
The same inputs (seeded) go through the library's functions
(official/reweighting/frl.py, wat.py, cfa.py, official/core/averaging.py);
the script prints the largest absolute difference of every quantity and
exits 1 if one exceeds 1e-5 (the official codes compute in float32).
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

K = 10
TOLERANCE = 1e-5

# The torch side: reads the inputs (JSON on stdin), writes the official
# results (JSON on stdout).
TORCH_SIDE = r'''
import io, json, os, sys, types, contextlib
import numpy as np
import torch
root = sys.argv[1]
K = 10
inputs = json.load(sys.stdin)
out = {}

def official_frl(module_name, lines_dir):
  sys.path.insert(0, lines_dir)
  module = __import__(module_name)
  sys.path.pop(0)
  return module

# ---- FRL: the official frl_train, evaluate/train_model replaced.
for variant, module_name in (("reweight", "utils_frl"), ("remargin", "utils_frl2")):
  frl = official_frl(module_name, os.path.join(root, "fair_robust"))
  cfg = inputs["frl"][variant]
  lmbda = torch.tensor(cfg["lambda0"], dtype=torch.float32)
  rows = []
  for epoch in cfg["epochs"]:
    errors = (torch.tensor(epoch["class_clean_error"]),
              torch.tensor(epoch["class_bndy_error"]),
              epoch["total_clean_error"], epoch["total_bndy_error"])
    seen = {}
    frl.evaluate = lambda *a, errors=errors, **k: errors
    def record(model, loader, optimizer, diff0, diff1, diff2, *a, **k):
      seen.update(diff0=diff0.tolist(), diff1=diff1.tolist(),
                  diff2=diff2.tolist())
    frl.train_model = record
    with contextlib.redirect_stdout(io.StringIO()):
      lmbda = frl.frl_train(None, None, None, None, epoch["now_epoch"], None,
                            None, "cpu", torch.tensor(cfg["delta0"]),
                            torch.tensor(cfg["delta1"]), cfg["rate1"],
                            cfg["rate2"], lmbda, cfg["beta"], cfg["lim"])
    rows.append(dict(seen, lmbda=lmbda.tolist()))
  out["frl_" + variant] = rows
acc = frl.in_class(torch.tensor(inputs["in_class"]["predict"]),
                   torch.tensor(inputs["in_class"]["label"]))
out["in_class"] = acc.tolist()

def inline(path, first, last, starts):
  """Lines first..last (1-based) of a file, dedented, checked."""
  with open(path) as f:
    lines = f.read().split("\n")[first - 1:last]
  assert lines[0].strip().startswith(starts), (path, lines[0])
  indent = len(lines[0]) - len(lines[0].lstrip())
  return "\n".join(l[indent:] for l in lines)

# ---- WAT: lines 244-248 of worst_class_adversarial_train.py.
code = inline(os.path.join(root, "WAT", "worst_class_adversarial_train.py"),
              244, 248, "for i in range(args.class_num+1)")
w = inputs["wat"]
epochs = len(w["nat"])
ns = {"torch": torch,
      "args": types.SimpleNamespace(class_num=K, beta=w["beta"], eta=w["eta"]),
      "wat_valid_nat_cost": torch.tensor(w["nat"]),
      "wat_valid_bndy_cost": torch.tensor(w["bndy"]),
      "wat_valid_cost": torch.zeros(epochs, K + 1)}
rows = []
for epoch in range(epochs):
  ns["epoch"] = epoch
  exec(code, ns)
  rows.append(ns["nat_class_weights"].tolist())
out["wat"] = rows

# ---- CFA: CCM / CCR (train.py 196-208), FAWA gate (249-257).
sys.modules["torchvision"] = types.SimpleNamespace(datasets=None,
                                                   transforms=None)
sys.path.insert(0, os.path.join(root, "CFA"))
import utils as cfa_utils
c = inputs["cfa"]
ccm = inline(os.path.join(root, "CFA", "train.py"), 196, 208,
             "if epoch >= args.begin")
args = types.SimpleNamespace(begin=c["begin"], lambda_1=c["lambda1"],
                             lambda_2=c["lambda2"], ccr=True,
                             threshold=c["threshold"], decay_rate=c["decay"])
eps, beta = c["eps"], c["beta"]
rows = []
for epoch, train_robust in enumerate(c["train_robust"]):
  cw = torch.zeros(1, 6, K)
  cw[-1, 1, :] = torch.tensor(train_robust)
  ns = {"torch": torch, "args": args, "epoch": epoch, "cw_tensor": cw,
        "device": "cpu", "eps": eps, "beta": beta,
        "class_beta": torch.ones(K) * (beta / (1 + beta))}
  exec(ccm, ns)
  rows.append({"class_eps": ns["class_eps"].tolist(),
               "class_beta": ns["class_beta"].tolist()})
out["cfa_ccm_ccr"] = rows
gate = inline(os.path.join(root, "CFA", "train.py"), 249, 257,
              "R_min = valid_result[3].min()")

def module(values):
  m = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
  with torch.no_grad():
    m[0].weight.copy_(torch.tensor(values["kernel"]).T)
    m[0].bias.copy_(torch.tensor(values["bias"]))
    m[1].weight.copy_(torch.tensor(values["gamma"]))
    m[1].bias.copy_(torch.tensor(values["beta"]))
    m[1].running_mean.copy_(torch.tensor(values["moving_mean"]))
    m[1].running_var.copy_(torch.tensor(values["moving_variance"]))
  return m

fawa = module(c["thetas"][0])
ns = {"weight_average": cfa_utils.weight_average, "args": args,
      "SEAT_init": False, "FAWA_model": fawa}
accepted = []
for theta, robust in zip(c["thetas"], c["valid_robust"]):
  ns["model"] = module(theta)
  ns["valid_result"] = (None, None, None, torch.tensor(robust))
  before = ns["SEAT_init"]
  exec(gate, ns)
  accepted.append(bool(ns["valid_result"][3].min() >= args.threshold))
state = ns["FAWA_model"].state_dict()
out["cfa_fawa"] = {"kernel": state["0.weight"].T.tolist(),
                   "bias": state["0.bias"].tolist(),
                   "gamma": state["1.weight"].tolist(),
                   "beta": state["1.bias"].tolist(),
                   "moving_mean": state["1.running_mean"].tolist(),
                   "moving_variance": state["1.running_var"].tolist(),
                   "accepted": accepted}
json.dump(out, sys.stdout)
'''


def make_inputs(seed=0):
  rng = np.random.default_rng(seed)

  def epochs(n, first_epoch=1):
    rows = []
    for e in range(n):
      clean = rng.uniform(0.55, 0.95, K)
      robust = clean - rng.uniform(0.1, 0.45, K)
      rows.append({"now_epoch": first_epoch + e,
                   "class_clean_error": (1 - clean).tolist(),
                   "class_bndy_error": (clean - robust).tolist(),
                   # A balanced split: totals = class means.
                   "total_clean_error": float(1 - clean.mean()),
                   "total_bndy_error": float((clean - robust).mean())})
    return rows

  frl = {}
  for variant, tau, rate2 in (("reweight", 0.1, 0.1), ("remargin", 0.07, 0.2)):
    lam = np.concatenate([rng.uniform(0, 0.08, K), rng.uniform(0, 0.08, K),
                          rng.normal(0, 0.1, K) if variant == "remargin"
                          else np.zeros(K)])
    frl[variant] = {"lambda0": lam.tolist(), "delta0": [tau] * K,
                    "delta1": [tau] * K, "rate1": 0.05, "rate2": rate2,
                    "beta": 1.5, "lim": 0.5,
                    # epoch 40 halves rate1 inside the official main loop,
                    # not in frl_train: epochs 1-3 here.
                    "epochs": epochs(3)}
  label = rng.integers(0, K, 500)
  predict = np.where(rng.uniform(size=500) < 0.7, label,
                     rng.integers(0, K, 500))
  nat = rng.uniform(0.3, 2.0, (3, K + 1))
  bndy = rng.uniform(0.05, 0.6, (3, K + 1))
  wat = {"nat": nat.tolist(), "bndy": bndy.tolist(), "beta": 6.0, "eta": 0.1}

  def theta():
    return {"kernel": rng.normal(size=(3, 2)).tolist(),
            "bias": rng.normal(size=2).tolist(),
            "gamma": rng.uniform(0.5, 1.5, 2).tolist(),
            "beta": rng.normal(size=2).tolist(),
            "moving_mean": rng.normal(size=2).tolist(),
            "moving_variance": rng.uniform(0.5, 2, 2).tolist()}

  cfa = {"begin": 2, "lambda1": 0.5, "lambda2": 0.5, "threshold": 0.24,
         "decay": 0.88, "eps": 8 / 255, "beta": 6.0,
         "train_robust": rng.uniform(0.1, 0.8, (4, K)).tolist(),
         "thetas": [theta() for _ in range(5)],
         # worst classes 0.20, 0.30, 0.24, 0.10, 0.50: epochs 2, 3, 5 join.
         "valid_robust": [np.r_[0.2, rng.uniform(0.5, 0.9, K - 1)].tolist(),
                          np.r_[0.3, rng.uniform(0.5, 0.9, K - 1)].tolist(),
                          np.r_[0.24, rng.uniform(0.5, 0.9, K - 1)].tolist(),
                          np.r_[0.1, rng.uniform(0.5, 0.9, K - 1)].tolist(),
                          np.r_[0.5, rng.uniform(0.5, 0.9, K - 1)].tolist()]}
  return {"frl": frl, "wat": wat, "cfa": cfa,
          "in_class": {"predict": predict.tolist(), "label": label.tolist()}}


def ours(inputs):
  """The library's updates on the same inputs."""
  from official.evaluation import validation
  from official.reweighting import cfa
  from official.reweighting import frl
  from official.reweighting import wat
  out = {}
  for variant, cfg in inputs["frl"].items():
    lam = np.array(cfg["lambda0"]).reshape(3, K)
    rows = []
    for epoch in cfg["epochs"]:
      clean = 1 - np.array(epoch["class_clean_error"])
      robust = clean - np.array(epoch["class_bndy_error"])
      gaps = frl.constraint_gaps(clean, robust, 1 - epoch["total_clean_error"],
                                 1 - epoch["total_clean_error"]
                                 - epoch["total_bndy_error"],
                                 cfg["delta0"][0], cfg["delta1"][0])
      lam = np.stack(frl.update_multipliers(
          *lam, *gaps, rate1=frl.rate_at(cfg["rate1"], epoch["now_epoch"] - 1,
                                         40),
          rate2=cfg["rate2"], limit=cfg["lim"],
          remargin=variant == "remargin"))
      high = 3.0 if variant == "remargin" else 2.5
      rows.append({"lmbda": lam.reshape(-1).tolist(),
                   "diff0": frl.class_weights(lam[0]).tolist(),
                   "diff1": frl.class_weights(lam[1]).tolist(),
                   "diff2": frl.epsilon_scale(lam[2], 0.98, high).tolist()})
    out["frl_" + variant] = rows
  ic = inputs["in_class"]
  out["in_class"] = validation.per_class(
      np.equal(ic["predict"], ic["label"]), np.array(ic["label"]), K).tolist()
  w = inputs["wat"]
  nat, bndy = np.array(w["nat"]), np.array(w["bndy"])
  cumulative, rows = np.zeros(K + 1), []
  for e in range(len(nat)):
    cumulative = cumulative + wat.costs(nat[e, :K], bndy[e, :K], nat[e, K],
                                        bndy[e, K], w["beta"])
    rows.append(wat.hedge_weights(cumulative, w["eta"], K).tolist())
  out["wat"] = rows
  c = inputs["cfa"]
  rows = []
  for epoch, t in enumerate(c["train_robust"]):
    on = epoch >= c["begin"]
    beta_y = cfa.class_beta(t, c["lambda2"], c["beta"]) if on else np.full(
        K, c["beta"])
    w_nat, w_kl = cfa.trades_weights(beta_y, c["beta"])
    rows.append({
        "class_eps": (cfa.class_epsilon(t, c["lambda1"], c["eps"]) if on
                      else np.full(K, c["eps"])).tolist(),
        # The code's b_y = β_y/(1 + β_y): our w_kl·β (and w_nat = 1 − b_y).
        "class_beta": (np.asarray(w_kl) * c["beta"]).tolist(),
        "w_nat_plus_b": (np.asarray(w_nat) + np.asarray(w_kl) * c["beta"]
                         ).tolist()})
  out["cfa_ccm_ccr"] = rows
  out["cfa_fawa"] = _fawa(c)
  return out


def _fawa(c):
  """The library's gated EMA (core/averaging.py) on a Dense + BN model."""
  import keras
  from official.core import averaging
  from official.reweighting import cfa
  inputs = keras.Input((3,))
  x = keras.layers.Dense(2, name="dense")(inputs)
  x = keras.layers.BatchNormalization(name="bn")(x)
  model = keras.Model(inputs, x)
  dense, bn = model.get_layer("dense"), model.get_layer("bn")
  average = averaging.WeightAverage(model, "ema", 0, c["decay"])
  accepted = []
  for epoch, (theta, robust) in enumerate(zip(c["thetas"], c["valid_robust"])):
    dense.kernel.assign(np.array(theta["kernel"], np.float32))
    dense.bias.assign(np.array(theta["bias"], np.float32))
    bn.gamma.assign(np.array(theta["gamma"], np.float32))
    bn.beta.assign(np.array(theta["beta"], np.float32))
    bn.moving_mean.assign(np.array(theta["moving_mean"], np.float32))
    bn.moving_variance.assign(np.array(theta["moving_variance"], np.float32))
    ok = cfa.fawa_gate(robust, c["threshold"])
    average.update(epoch, ok)
    accepted.append(ok)
  average.apply_to(model)
  return {"kernel": dense.kernel.numpy().tolist(),
          "bias": dense.bias.numpy().tolist(),
          "gamma": bn.gamma.numpy().tolist(), "beta": bn.beta.numpy().tolist(),
          "moving_mean": bn.moving_mean.numpy().tolist(),
          "moving_variance": bn.moving_variance.numpy().tolist(),
          "accepted": accepted}


def compare(theirs, mine):
  """[(name, max |difference|)] over every shared quantity."""
  rows = []

  def walk(name, a, b):
    if isinstance(a, dict):
      for k in a:
        if k in b:
          walk(f"{name}.{k}", a[k], b[k])
    elif isinstance(a, list) and a and isinstance(a[0], dict):
      for i, (x, y) in enumerate(zip(a, b)):
        walk(f"{name}[{i}]", x, y)
    else:
      rows.append((name, float(np.max(np.abs(np.asarray(a, np.float64)
                                             - np.asarray(b, np.float64))))))

  for key in theirs:
    walk(key, theirs[key], mine[key])
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--official", default="/tmp/official")
  parser.add_argument("--torch_python", default="/work/torchvenv/bin/python")
  args = parser.parse_args()
  inputs = make_inputs()
  proc = subprocess.run([args.torch_python, "-c", TORCH_SIDE, args.official],
                        input=json.dumps(inputs), capture_output=True,
                        text=True, check=False)
  if proc.returncode:
    sys.exit(f"error: the official side failed: {proc.stderr.strip()[-2000:]}")
  theirs = json.loads(proc.stdout)
  mine = ours(inputs)
  rows = compare(theirs, mine)
  width = max(len(n) for n, _ in rows)
  for name, diff in rows:
    print(f"{name:<{width}}  max |official - ours| = {diff:.2e}")
  worst = max(d for _, d in rows)
  print(f"{len(rows)} quantities, largest difference {worst:.2e} "
        f"(tolerance {TOLERANCE:g})")
  sys.exit(0 if worst <= TOLERANCE else 1)


if __name__ == "__main__":
  main()
