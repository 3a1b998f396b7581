"""The loaders: tfds (mocked, offline), scikit-learn digits, local .npz files."""
import ml_collections
import numpy as np
import pytest
from sklearn import datasets as sk_datasets
import tensorflow_datasets as tfds

from official.data import sources

from configs.common import MNIST10K  # ../shared/data/mnist10k.npz beside the repo


def _cfg(**kw):
  return ml_collections.ConfigDict(kw)


def test_digits_split():
  splits = sources.load_digits(_cfg(name="digits"))
  assert splits.x_train.shape == (1437, 8, 8, 1)
  assert splits.x_test.shape == (360, 8, 8, 1)
  assert splits.num_classes == 10 and splits.pixel_max == 16
  assert splits.x_train.dtype == np.uint8 and splits.x_train.max() == 16
  # Stratified: each class is ~20% test (the smallest class has 174 images).
  assert (np.abs(np.bincount(splits.y_test) - 36) <= 1).all()
  # Train + test is exactly the bundled set, as rows of (pixels, label).
  digits = sk_datasets.load_digits()
  rows = lambda x, y: sorted(map(bytes, np.concatenate(
      [x.reshape(len(x), -1), y[:, None]], 1).astype(np.uint8)))
  assert rows(np.concatenate([splits.x_train, splits.x_test]),
              np.concatenate([splits.y_train, splits.y_test])) == rows(
                  digits.images, digits.target)
  # Fixed split: the same on every call.
  again = sources.load_digits(_cfg(name="digits"))
  np.testing.assert_array_equal(again.x_train, splits.x_train)


def test_npz_mnist10k():
  splits = sources.load_npz(_cfg(name="npz", path=MNIST10K))
  assert splits.x_train.shape == (8000, 28, 28, 1)
  assert splits.x_test.shape == (2000, 28, 28, 1)
  assert splits.num_classes == 10 and splits.pixel_max == 255
  with np.load(MNIST10K) as f:
    np.testing.assert_array_equal(splits.x_train[123, ..., 0], f["x_train"][123])
    np.testing.assert_array_equal(splits.y_test, f["y_test"])


def test_npz_tiny_float_rgb(tmp_path):
  path = str(tmp_path / "tiny.npz")
  x = np.random.RandomState(0).rand(6, 4, 5, 3)
  np.savez(path, x_train=x, y_train=np.array([0, 1, 2, 0, 1, 2]),
           x_test=x[:2], y_test=np.array([2, 0]))
  splits = sources.load_npz(_cfg(name="npz", path=path))
  assert splits.x_train.shape == (6, 4, 5, 3)
  assert splits.x_train.dtype == np.float32 and splits.pixel_max == 1
  assert splits.num_classes == 3
  np.testing.assert_allclose(splits.x_test, x[:2], rtol=1e-6)


def _write(tmp_path, **arrays):
  good = dict(x_train=np.zeros((4, 2, 2), np.uint8), y_train=np.arange(4),
              x_test=np.zeros((2, 2, 2), np.uint8), y_test=np.arange(2))
  good.update(arrays)
  path = str(tmp_path / "d.npz")
  np.savez(path, **{k: v for k, v in good.items() if v is not None})
  return path


@pytest.mark.parametrize("arrays,match", [
    (dict(y_train=None, x_test=None), r"d.npz': missing key\(s\) y_train, "
                                      r"x_test; data.name=npz needs x_train, "
                                      r"y_train, x_test, y_test"),
    (dict(x_train=np.zeros((4, 2), np.uint8)),
     r"d.npz': x_train has shape \(4, 2\); expected \(N, H, W\) or"),
    (dict(x_test=np.zeros((2, 3, 3), np.uint8)),
     r"d.npz': x_train images are \(2, 2, 1\) but x_test images are "
     r"\(3, 3, 1\)"),
    (dict(y_train=np.arange(3)), r"d.npz': y_train must be integer labels of "
                                 r"shape \(4,\)"),
    (dict(y_test=np.array([0.0, 1.0])), r"d.npz': y_test must be integer"),
    (dict(y_train=np.array([0, -1, 1, 2])),
     r"d.npz': y_train has labels in \[-1, 2\], outside \[0, 3\)"),
    (dict(y_test=np.array([0, 7])),
     r"d.npz': y_test has labels in \[0, 7\], outside \[0, 4\)"),
    (dict(x_train=np.full((4, 2, 2), 1.5)),
     r"d.npz': x_train must be uint8 \(0..255\) or float in \[0, 1\], got "
     r"float64 in \[1.5, 1.5\]"),
])
def test_npz_bad_content(tmp_path, arrays, match):
  with pytest.raises(ValueError, match=match):
    sources.load_npz(_cfg(name="npz", path=_write(tmp_path, **arrays)))


def test_npz_bad_files(tmp_path):
  with pytest.raises(ValueError, match=r"data.name=npz needs data.path=FILE"):
    sources.load_npz(_cfg(name="npz"))
  with pytest.raises(ValueError, match=r"data.path '.*nope.npz': file not "
                     r"found"):
    sources.load_npz(_cfg(name="npz", path=str(tmp_path / "nope.npz")))
  junk = tmp_path / "junk.npz"
  junk.write_bytes(b"this is not a zip file at all")
  with pytest.raises(ValueError, match=r"data.path '.*junk.npz' is not a "
                     r"valid .npz file \("):
    sources.load_npz(_cfg(name="npz", path=str(junk)))
  single = str(tmp_path / "one.npy")
  np.save(single, np.zeros(3))
  with pytest.raises(ValueError, match=r"one.npy' is not a valid .npz file "
                     r"\(it is a single .npy array\)"):
    sources.load_npz(_cfg(name="npz", path=single))


@pytest.mark.parametrize("name,shape,num_classes", [
    ("cifar10", (32, 32, 3), 10), ("cifar100", (32, 32, 3), 100),
    ("svhn_cropped", (32, 32, 3), 10), ("mnist", (28, 28, 1), 10)])
def test_tfds_mocked(name, shape, num_classes):
  with tfds.testing.mock_data(num_examples=37):
    splits = sources.load_tfds(_cfg(name=name, data_dir="/nonexistent"))
  assert splits.x_train.shape == (37,) + shape
  assert splits.x_test.shape == (37,) + shape
  assert splits.x_train.dtype == np.uint8 and splits.pixel_max == 255
  assert splits.y_train.dtype == np.int32
  assert splits.num_classes == num_classes
  assert 0 <= splits.y_train.min() and splits.y_train.max() < num_classes


def test_tfds_unavailable(monkeypatch):
  # Not prepared, and the dataset's host does not resolve: fail at once,
  # without ever asking tfds to download (patched so no test can download).
  calls = []
  def offline_load(*args, **kwargs):
    calls.append(kwargs["download"])
    raise AssertionError("Dataset cifar10: could not find data in ...")
  monkeypatch.setattr(sources.tfds, "load", offline_load)
  monkeypatch.setattr(sources, "_resolves", lambda host, timeout=5.0: False)
  with pytest.raises(ValueError) as info:
    sources.load_tfds(_cfg(name="cifar10"))
  assert str(info.value) == (
      "cannot load tfds dataset 'cifar10' (ConnectionError: not prepared, and "
      "www.cs.toronto.edu is unreachable); it needs a download. Offline, use "
      "data.name=npz with data.path=FILE, or data.name=digits")
  assert calls == [False]


def test_tfds_download_failure_is_one_line(monkeypatch):
  # The host resolves but the download itself fails: its first line is kept.
  def load(*args, **kwargs):
    if not kwargs["download"]:
      raise AssertionError("not prepared")
    raise OSError("Failed to download 'cifar-10-binary.tar.gz'\nmore detail")
  monkeypatch.setattr(sources.tfds, "load", load)
  monkeypatch.setattr(sources, "_resolves", lambda host, timeout=5.0: True)
  with pytest.raises(ValueError, match=r"^cannot load tfds dataset 'cifar10' "
                     r"\(OSError: Failed to download 'cifar-10-binary.tar.gz'\); "
                     r"it needs a download") as info:
    sources.load_tfds(_cfg(name="cifar10"))
  assert "\n" not in str(info.value)