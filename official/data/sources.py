"""Where the pixels come from: tfds, scikit-learn's digits, or a local .npz.

Each loader returns the whole train and test splits as numpy arrays, in their
original order (a row's position is the example id used everywhere else).
"""
import concurrent.futures
import dataclasses
import socket
import urllib.parse
import os

import numpy as np
from sklearn import datasets as sk_datasets
from sklearn import model_selection
import tensorflow_datasets as tfds

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataclasses.dataclass
class Splits:
  x_train: np.ndarray  # uint8 (or float32 in [0, 1]), [N, H, W, C].
  y_train: np.ndarray  # int32 [N].
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int
  pixel_max: float     # image / pixel_max is in [0, 1]: 255, 16 (digits) or 1.


def load_tfds(data_cfg):
  """cifar10, cifar100, svhn_cropped, mnist: the tfds `train` and `test` splits.

  Prepared data (or tfds.testing.mock_data) is read without touching the
  network. Otherwise the download runs, but only after a quick check that the
  dataset's host resolves: offline, tfds would retry for minutes first.
  """
  name = data_cfg.name
  data_dir = data_cfg.get("data_dir", None) or None
  try:
    try:
      (train, test), info = tfds.load(name, split=["train", "test"],
                                      data_dir=data_dir, download=False,
                                      with_info=True)
    except Exception:  # pylint: disable=broad-except  (not prepared yet)
      host = _download_host(name, data_dir)
      if host and not _resolves(host):
        raise ConnectionError(f"not prepared, and {host} is unreachable") from None
      (train, test), info = tfds.load(name, split=["train", "test"],
                                      data_dir=data_dir, download=True,
                                      with_info=True)
    x_train, y_train = _to_numpy(train)
    x_test, y_test = _to_numpy(test)
  except Exception as e:  # pylint: disable=broad-except
    reason = f"{type(e).__name__}: {str(e).strip()}".splitlines()[0][:120]
    raise ValueError(
        f"cannot load tfds dataset '{name}' ({reason}); it needs a download. "
        "Offline, use data.name=npz with data.path=FILE, or data.name=digits"
    ) from None
  return Splits(x_train, y_train, x_test, y_test,
                num_classes=info.features["label"].num_classes, pixel_max=255.)


def _download_host(name, data_dir):
  """The host of the dataset's homepage (known offline, from tfds metadata)."""
  try:
    homepage = tfds.builder(name, data_dir=data_dir).info.homepage
  except Exception:  # pylint: disable=broad-except
    return None
  return urllib.parse.urlparse(homepage or "").hostname


def _resolves(host, timeout=5.0):
  """Whether DNS resolves `host` within `timeout` seconds."""
  with concurrent.futures.ThreadPoolExecutor(1) as pool:
    future = pool.submit(socket.getaddrinfo, host, 443)
    try:
      future.result(timeout=timeout)
      return True
    except Exception:  # pylint: disable=broad-except
      return False


def _to_numpy(ds):
  # Not `batch_size=-1` in tfds.load: it aborts the process under mock_data.
  images, labels = [], []
  for batch in tfds.as_numpy(ds.batch(5000)):
    images.append(batch["image"])
    labels.append(batch["label"])
  return np.concatenate(images), np.concatenate(labels).astype(np.int32)


def load_digits(data_cfg):
  """scikit-learn's 1,797 8x8 digits (0..16), split 1437 train / 360 test."""
  del data_cfg  # Nothing to configure.
  digits = sk_datasets.load_digits()
  x = digits.images.astype(np.uint8)[..., None]
  y = digits.target.astype(np.int32)
  # A fixed split (seed 0, whatever the run seed) keeps the ids stable across
  # runs; stratified so each class is ~20% test. Sorted to keep the file order.
  train, test = model_selection.train_test_split(
      np.arange(len(y)), test_size=360, stratify=y, random_state=0)
  train, test = np.sort(train), np.sort(test)
  return Splits(x[train], y[train], x[test], y[test], num_classes=10,
                pixel_max=16.)


def load_npz(data_cfg):
  """A local .npz with x_train, y_train, x_test, y_test (data.path)."""
  path = data_cfg.get("path", None)
  if not path:
    raise ValueError("data.name=npz needs data.path=FILE, an .npz with keys "
                     f"{', '.join(NPZ_KEYS)}")
  arrays = _read_npz(path)
  xs, ys = [], []
  for split in ("train", "test"):
    x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
    if x.ndim == 3:  # Grey images without a channel axis.
      x = x[..., None]
    if x.ndim != 4 or len(x) == 0:
      raise ValueError(f"data.path '{path}': x_{split} has shape "
                       f"{arrays[f'x_{split}'].shape}; expected (N, H, W) or "
                       "(N, H, W, C) with N > 0")
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
      raise ValueError(f"data.path '{path}': y_{split} must be integer labels "
                       f"of shape ({len(x)},), got {y.dtype} {y.shape}")
    xs.append(_check_pixels(x, f"data.path '{path}': x_{split}"))
    ys.append(y.astype(np.int32))
  if xs[0].shape[1:] != xs[1].shape[1:]:
    raise ValueError(f"data.path '{path}': x_train images are "
                     f"{xs[0].shape[1:]} but x_test images are "
                     f"{xs[1].shape[1:]}")
  num_classes = int(ys[0].max()) + 1
  for split, y in zip(("train", "test"), ys):
    if y.min() < 0 or y.max() >= num_classes:
      raise ValueError(f"data.path '{path}': y_{split} has labels in "
                       f"[{y.min()}, {y.max()}], outside [0, {num_classes}) "
                       "(classes are 0..max(y_train))")
  pixel_max = 255. if xs[0].dtype == np.uint8 else 1.
  return Splits(xs[0], ys[0], xs[1], ys[1], num_classes, pixel_max)


def _read_npz(path):
  if not os.path.isfile(path):
    raise ValueError(f"data.path '{path}': file not found")
  invalid = f"data.path '{path}' is not a valid .npz file"
  try:
    f = np.load(path, allow_pickle=False)
  except Exception as e:  # pylint: disable=broad-except
    # Not a zip/npy at all, pickled objects, a truncated file, ...
    raise ValueError(f"{invalid} ({type(e).__name__})") from None
  if not isinstance(f, np.lib.npyio.NpzFile):
    raise ValueError(f"{invalid} (it is a single .npy array)")
  with f:
    missing = [k for k in NPZ_KEYS if k not in f.files]
    if missing:
      raise ValueError(f"data.path '{path}': missing key(s) "
                       f"{', '.join(missing)}; data.name=npz needs "
                       f"{', '.join(NPZ_KEYS)}")
    try:
      return {k: f[k] for k in NPZ_KEYS}
    except Exception as e:  # pylint: disable=broad-except
      raise ValueError(f"{invalid} ({type(e).__name__})") from None


def _check_pixels(x, what):
  """uint8 as is; other integers 0..255 to uint8; floats in [0, 1] to float32."""
  if np.issubdtype(x.dtype, np.integer) and x.min() >= 0 and x.max() <= 255:
    return x.astype(np.uint8)
  if np.issubdtype(x.dtype, np.floating) and x.min() >= 0 and x.max() <= 1:
    return x.astype(np.float32)
  raise ValueError(f"{what} must be uint8 (0..255) or float in [0, 1], got "
                   f"{x.dtype} in [{x.min()}, {x.max()}]")
