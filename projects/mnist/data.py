"""Training data: MNIST through tensorflow-datasets, and toy distributions.

MNIST is split as the authors did: train = train[:50000], validation =
train[50000:], test = test. TFDS stores the 60,000 training images in a fixed,
deterministic order (a hash of each example's key), not the order of the IDX
files, so these are 50,000 / 10,000 fixed images from the same pool rather than
the very images the authors used.

On an offline machine, point ``manual_dir`` at a folder holding the four
original files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz): TFDS builds the data
set from them and verifies their checksums.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import os
import re

import numpy as np

from gan_jax.errors import UserError

DATASETS = ("mnist",)
MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
MNIST_SPLITS = {"train": "train[:50000]", "validation": "train[50000:]", "test": "test"}
MNIST_VERSION = "3.0.1"  # pinned: the same images whatever TFDS release is installed
CACHE_NAME = "gan_jax_arrays.npz"  # decoded splits, next to TFDS's prepared files
# Where TFDS's MNIST builder downloads from (tensorflow_datasets' mnist._MNIST_URL; a test
# checks they agree): probed before TensorFlow is even imported, so that an offline machine
# hears within seconds that it needs manual_dir.
MNIST_SOURCE_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Flattened uint8 images ([N, 784]) and labels of each split."""

  train: np.ndarray
  validation: np.ndarray
  test: np.ndarray
  train_labels: np.ndarray
  validation_labels: np.ndarray
  test_labels: np.ndarray
  image_shape: tuple[int, int, int]

  @property
  def dim(self) -> int:
    return int(np.prod(self.image_shape))


def _hide_accelerators_from_tensorflow():
  """TensorFlow only reads files here; keep it off the GPUs/TPUs that JAX uses."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  try:
    tf.config.set_visible_devices([], "GPU")
    tf.config.set_visible_devices([], "TPU")
  except (RuntimeError, ValueError):  # already initialised, or no such device type
    pass


def _missing_data_error(manual_dir: str, data_dir: str, cause: Exception) -> UserError:
  where = f"manual_dir={manual_dir!r}" if manual_dir else "no manual_dir"
  missing = ""
  if manual_dir:
    absent = [f for f in MNIST_FILES if not os.path.exists(os.path.join(manual_dir, f))]
    missing = f" Missing there: {', '.join(absent)}." if absent else ""
  return UserError(
      f"MNIST could not be found or downloaded ({where}, data_dir={data_dir or 'TFDS default'!r})."
      f"{missing} On a machine without internet access, put the four original MNIST files "
      f"({', '.join(MNIST_FILES)}) in one folder and pass it as config.data.manual_dir, e.g. "
      f"--config.data.manual_dir=/path/to/mnist; TFDS then builds the data set from them and "
      f"checks their checksums. (Underlying error: {type(cause).__name__}: "
      f"{str(cause).splitlines()[0] if str(cause) else ''})")


def _checksum_error(manual_dir: str, cause: Exception) -> UserError:
  """TFDS found a file whose SHA-256 is not the published one: name it."""
  match = re.search(r"downloaded to (\S+?),", str(cause))
  path = match.group(1) if match else f"one of the files in {manual_dir}"
  return UserError(
      f"The MNIST file {path} is corrupted or not the original: its checksum does not match "
      f"the one TFDS records for it (truncated download, disk error or an edited file). "
      f"Replace it with a fresh copy of the original file (the four are "
      f"{', '.join(MNIST_FILES)}) and launch again; nothing was prepared from the damaged "
      f"set.")


def _default_data_dir() -> str:
  """TFDS's own default: $TFDS_DATA_DIR, else ~/tensorflow_datasets."""
  return os.environ.get("TFDS_DATA_DIR") or os.path.join(os.path.expanduser("~"),
                                                         "tensorflow_datasets")


def _digest(arrays: dict[str, np.ndarray]) -> str:
  h = hashlib.sha256()
  for name in sorted(arrays):
    h.update(name.encode())
    h.update(np.ascontiguousarray(arrays[name]).tobytes())
  return h.hexdigest()


def _read_cache(path: str) -> dict[str, np.ndarray] | None:
  """The cached splits if the cache exists and its digest matches; else None."""
  if not os.path.exists(path):
    return None
  try:
    with np.load(path) as f:
      arrays = {k: f[k] for k in f.files if k != "sha256"}
      stored = str(f["sha256"])
  except Exception:  # unreadable: rebuilt from TFDS's files below  # pylint: disable=broad-except
    return None
  return arrays if _digest(arrays) == stored else None


def _write_cache(path: str, arrays: dict[str, np.ndarray]) -> None:
  tmp = f"{path}.tmp{os.getpid()}.npz"
  try:
    np.savez(tmp, sha256=np.array(_digest(arrays)), **arrays)
    os.replace(tmp, path)
  except OSError:  # a read-only data_dir: no cache, nothing else changes
    if os.path.exists(tmp):
      os.remove(tmp)


def load_mnist(*, manual_dir: str = "", data_dir: str = "") -> Dataset:
  """MNIST's three splits as flat uint8 arrays, built by TFDS (offline from ``manual_dir``).

  TFDS prepares the data set once per ``data_dir`` (checking the source files'
  checksums); the decoded splits are then cached beside its files (with their
  SHA-256, verified on every read), so later runs skip TensorFlow altogether.
  """
  root = data_dir or _default_data_dir()
  cache = os.path.join(root, "mnist", MNIST_VERSION, CACHE_NAME)
  arrays = _read_cache(cache)
  if arrays is None:
    with _exclusive(os.path.join(root, ".gan_jax_mnist.lock")):  # one process prepares
      arrays = _read_cache(cache)  # ... and the others find its cache
      if arrays is None:
        arrays = _load_mnist_with_tfds(manual_dir, data_dir)
        _write_cache(cache, arrays)
  return Dataset(image_shape=(28, 28, 1), **arrays)


@contextlib.contextmanager
def _exclusive(path: str):
  """An advisory lock on ``path`` across processes (none where it cannot be taken)."""
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    f = open(path, "a")  # pylint: disable=consider-using-with
  except OSError:  # e.g. a read-only data_dir: TFDS reports what it cannot do
    yield
    return
  try:
    fcntl.flock(f, fcntl.LOCK_EX)
    yield
  finally:
    f.close()  # releases the lock


def _load_mnist_with_tfds(manual_dir: str, data_dir: str) -> dict[str, np.ndarray]:
  if manual_dir and not os.path.isdir(manual_dir):
    raise _missing_data_error(manual_dir, data_dir,
                              FileNotFoundError(f"{manual_dir} is not a directory"))
  absent = [f for f in MNIST_FILES
            if manual_dir and not os.path.exists(os.path.join(manual_dir, f))]
  if absent:  # TFDS would try (and, offline, slowly fail) to download them
    raise _missing_data_error(manual_dir, data_dir,
                              FileNotFoundError(f"{', '.join(absent)} not in {manual_dir}"))
  prepared = os.path.join(data_dir or _default_data_dir(), "mnist", MNIST_VERSION,
                          "dataset_info.json")
  if not manual_dir and not os.path.exists(prepared):  # TFDS would download: is there a network?
    _check_reachable(MNIST_SOURCE_URL, manual_dir, data_dir)
  _hide_accelerators_from_tensorflow()
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

  builder = tfds.builder(f"mnist:{MNIST_VERSION}", data_dir=data_dir or None)
  download_config = tfds.download.DownloadConfig(manual_dir=manual_dir or None)
  try:
    builder.download_and_prepare(download_config=download_config)
  except Exception as e:  # network, missing or corrupt files: all mean "no data"
    if type(e).__name__ == "NonMatchingChecksumError":
      raise _checksum_error(manual_dir, e) from e
    raise _missing_data_error(manual_dir, data_dir, e) from e
  arrays = {}
  for name, split in MNIST_SPLITS.items():
    d = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
    arrays[name] = d["image"].reshape(len(d["image"]), -1)
    arrays[f"{name}_labels"] = d["label"].astype(np.int32)
  return arrays


PROBE_TIMEOUT_S = 5.0  # connect and read, for the one request that asks "is there a network?"


def _check_reachable(url: str, manual_dir: str, data_dir: str) -> None:
  """Fail within seconds when the data must be downloaded and the network is unreachable.

  TFDS's downloader retries with back-off for minutes before it gives up. One
  HEAD request, through the same proxies (``requests`` reads HTTP(S)_PROXY as
  TFDS does), answers first: any HTTP answer means the host is reachable.
  """
  if not url:
    return
  import requests  # pylint: disable=import-outside-toplevel  # TFDS's own HTTP client
  try:
    requests.head(url, timeout=PROBE_TIMEOUT_S, allow_redirects=False)
  except requests.RequestException as e:
    raise _missing_data_error(manual_dir, data_dir, ConnectionError(
        f"the download source {url} cannot be reached ({type(e).__name__}); this machine "
        f"seems to be offline")) from e


def load(data_cfg) -> Dataset:
  """The data set a config's ``data`` section names."""
  if data_cfg.name not in DATASETS:
    raise UserError(f"config.data.name is {data_cfg.name!r}, which gan_jax does not know; "
                    f"use one of {DATASETS}.")
  return load_mnist(manual_dir=data_cfg.manual_dir, data_dir=data_cfg.data_dir)
