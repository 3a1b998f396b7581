r"""The RandAugment / AutoAugment ops (official/data/policies.py) vs torchvision's.

AT-BSL applies torchvision's RandAugment(2, 8) / AutoAugment(CIFAR10) to PIL
images; policies.py rewrites each op in TensorFlow with PIL's semantics. This
checks every op at every magnitude the two policies use (both signs) on the
same random 32x32 RGB and 28x28 grayscale uint8 images: ours saved to .npz,
then torchvision's `transforms.autoaugment._apply_op` on the PIL images
(interpolation NEAREST, fill None, as AT-BSL), pixel by pixel.

  python docs/measurements/policies_vs_torchvision.py --save=/tmp/ops.npz
  /work/torchvenv/bin/python docs/measurements/policies_vs_torchvision.py \
      --compare=/tmp/ops.npz          # needs torch, torchvision, pillow
"""
import argparse
import os
import sys

import numpy as np


def cases():
  """(image height, width, op, signed magnitude): RandAugment's M = 8 of 31
  bins and every level of 10 bins that the CIFAR-10 AutoAugment policy
  names (stored in the .npz: the PyTorch side needs no TensorFlow)."""
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__)))))
  from official.data import policies
  out = []
  for h, w in ((32, 32), (28, 28)):
    levels = {(op, 8, 31) for op in policies.RANDAUGMENT_OPS}
    levels |= {(op, lv, 10) for sub in policies.CIFAR10_POLICY
               for op, _, lv in sub}
    for op, level, bins in sorted(levels, key=str):
      v = policies.magnitude(op, level, bins, h, w)
      for sign in ((1, -1) if op in policies.SIGNED else (1,)):
        out.append((h, w, op, sign * v))
  return out


def images():
  rng = np.random.RandomState(0)
  # Smooth-ish content (not pure noise) so that blends and filters matter.
  rgb = rng.randint(0, 256, (32, 32, 3))
  rgb = ((rgb + np.roll(rgb, 1, 0) + np.roll(rgb, 1, 1)) // 3).astype(np.uint8)
  gray = rng.randint(0, 256, (28, 28, 1))
  gray = ((gray + np.roll(gray, 1, 0)) // 2).astype(np.uint8)
  return {32: rgb, 28: gray}


def ours(path):
  import tensorflow as tf
  todo = cases()
  from official.data import policies
  imgs = images()
  out = {"cases_op": np.array([op for _, _, op, _ in todo]),
         "cases_h": np.array([h for h, _, _, _ in todo]),
         "cases_v": np.array([v for _, _, _, v in todo])}
  for i, (h, _, op, v) in enumerate(todo):
    x = tf.constant(imgs[h].astype(np.float32))
    out[f"{i}"] = policies.apply_op(x, tf.constant(policies.OPS.index(op)),
                                    tf.constant(float(v))).numpy()
  np.savez(path, **out)
  print(f"saved {path}: {len(todo)} op/magnitude cases")


def torchvision_side(path):
  import torch
  # A torchvision wheel whose C ops do not load with this torch build still
  # has its pure-Python PIL transforms: skip the fake-kernel registrations.
  torch.library.register_fake = lambda *a, **k: (lambda f: f)
  from PIL import Image
  from torchvision.transforms import InterpolationMode
  from torchvision.transforms import autoaugment
  d = np.load(path)
  imgs = images()
  rows = []
  todo = zip(d["cases_h"].tolist(), d["cases_op"].tolist(),
             d["cases_v"].tolist())
  for i, (h, op, v) in enumerate(todo):
    arr = imgs[h]
    pil = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
    ref = autoaugment._apply_op(pil, op, v, InterpolationMode.NEAREST, None)
    ref = np.asarray(ref, np.float32).reshape(arr.shape)
    mine = d[f"{i}"]
    diff = np.abs(mine - ref)
    rows.append((op, h, v, float((diff == 0).mean()), float(diff.max())))
  print(f"{'op':<13}{'image':>6}{'magnitude':>11}{'equal px':>10}{'max diff':>9}")
  for op, h, v, equal, worst in rows:
    flag = "" if equal == 1.0 else "  <--"
    print(f"{op:<13}{h:>6}{v:>11.4f}{equal:>10.4f}{worst:>9.0f}{flag}")
  total = np.mean([r[3] for r in rows])
  exact = sum(r[3] == 1.0 for r in rows)
  print(f"{exact}/{len(rows)} cases pixel-exact; mean equal pixels {total:.4f}"
        f" (torch {torch.__version__})")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--save")
  parser.add_argument("--compare")
  args = parser.parse_args()
  if args.save:
    ours(args.save)
  elif args.compare:
    torchvision_side(args.compare)
  else:
    parser.error("give --save or --compare")


if __name__ == "__main__":
  main()
