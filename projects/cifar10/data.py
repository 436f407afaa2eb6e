"""CIFAR-10 through tensorflow-datasets, split and normalised as the authors' runs did.

Splits (goodfeli/adversarial cifar10_*.yaml): train = train[:40000], validation =
train[40000:] (as percentages, 80%, so that a smaller archive splits alike), test = test.
Images are kept as uint8 ``[N, 32*32*3]`` (height, width, channel); ``gcn`` gives the
global contrast normalisation of pylearn2's ``gcn: 55.`` (each image minus its mean,
scaled to an L2 norm of 55 over its 3,072 values), which is what the players see.

On an offline machine, put CIFAR's own archive ``cifar-10-binary.tar.gz`` (the binary
version from https://www.cs.toronto.edu/~kriz/cifar.html) in a folder and pass it as
``manual_dir``: TFDS prepares the data set from it and checks its checksum.
"""

from __future__ import annotations

import os

import numpy as np

from gan_jax.errors import UserError
from projects.mnist import data as mnist_data  # the Dataset record, the verified array cache

ARCHIVE = "cifar-10-binary.tar.gz"  # the name TFDS's cifar10 builder looks for in manual_dir
VERSION = "3.0.2"  # pinned, as MNIST's
SPLITS = {"train": "train[:80%]", "validation": "train[80%:]", "test": "test"}
IMAGE_SHAPE = (32, 32, 3)
GCN_SCALE = 55.0
CACHE_NAME = "gan_jax_arrays.npz"


def _no_archive(manual_dir: str, data_dir: str, cause: Exception | None = None) -> UserError:
  why = f" (Underlying error: {type(cause).__name__}: {str(cause).splitlines()[0]})" if (
      cause is not None and str(cause)) else ""
  where = f"manual_dir={manual_dir!r}" if manual_dir else "no manual_dir"
  return UserError(
      f"CIFAR-10 could not be prepared ({where}, data_dir={data_dir or 'TFDS default'!r}): "
      f"the folder must hold CIFAR's own binary archive {ARCHIVE} (163 MB, from "
      f"https://www.cs.toronto.edu/~kriz/cifar.html), under that name. Download it on a "
      f"machine with internet access, copy it there and pass the folder as "
      f"--config.data.manual_dir=/path/to/folder; TFDS prepares the data set from it once "
      f"and checks its checksum.{why}")


def load_cifar10(*, manual_dir: str = "", data_dir: str = "",
                 verify_checksum: bool = True) -> mnist_data.Dataset:
  """CIFAR-10's three splits as flat uint8 arrays, prepared by TFDS from ``manual_dir``.

  ``verify_checksum=False`` accepts an archive other than the published one (a small one
  built in CIFAR's format for tests); TFDS then records its checksum instead of checking
  it. The decoded splits are cached beside TFDS's files with their SHA-256, as MNIST's.
  """
  root = data_dir or mnist_data._default_data_dir()  # pylint: disable=protected-access
  cache = os.path.join(root, "cifar10", VERSION, CACHE_NAME)
  arrays = mnist_data._read_cache(cache)  # pylint: disable=protected-access
  if arrays is None:
    if not manual_dir or not os.path.isfile(os.path.join(manual_dir, ARCHIVE)):
      prepared = os.path.join(root, "cifar10", VERSION, "dataset_info.json")
      if not os.path.exists(prepared):  # TFDS would try (offline: for minutes) to download it
        raise _no_archive(manual_dir, data_dir)
    arrays = _prepare(manual_dir, data_dir, verify_checksum)
    mnist_data._write_cache(cache, arrays)  # pylint: disable=protected-access
  return mnist_data.Dataset(image_shape=IMAGE_SHAPE, **arrays)


def _prepare(manual_dir: str, data_dir: str, verify_checksum: bool) -> dict[str, np.ndarray]:
  mnist_data._hide_accelerators_from_tensorflow()  # pylint: disable=protected-access
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

  builder = tfds.builder(f"cifar10:{VERSION}", data_dir=data_dir or None)
  if not verify_checksum:
    _accept_archive(builder, os.path.join(manual_dir, ARCHIVE))
  try:
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=manual_dir or None))
  except Exception as e:  # a damaged or foreign archive, or no archive at all
    if type(e).__name__ == "NonMatchingChecksumError":
      raise UserError(f"The archive {os.path.join(manual_dir, ARCHIVE)} is not CIFAR's "
                      f"published {ARCHIVE}: its checksum differs from the one TFDS records "
                      f"(a truncated download, a disk error, or another file under that "
                      f"name). Replace it with a fresh copy and launch again; nothing was "
                      f"prepared from it.") from e
    raise _no_archive(manual_dir, data_dir, e) from e
  arrays = {}
  for name, split in SPLITS.items():
    d = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
    arrays[name] = d["image"].reshape(len(d["image"]), -1)
    arrays[f"{name}_labels"] = d["label"].astype(np.int32)
  return arrays


def _accept_archive(builder, path: str) -> None:
  """Make ``builder``'s downloads expect the checksum of the archive at ``path`` in place of
  the published one (this builder only: TFDS's recorded checksums stay as they are)."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

  url = builder._cifar_info.url  # pylint: disable=protected-access
  info = tfds.download.checksums.compute_url_info(path)
  make = builder._make_download_manager  # pylint: disable=protected-access

  def make_accepting(*args, **kwargs):
    manager = make(*args, **kwargs)
    manager._url_infos = {**manager._url_infos, url: info}  # pylint: disable=protected-access
    return manager

  builder._make_download_manager = make_accepting  # pylint: disable=protected-access


def gcn(images: np.ndarray, scale: float = GCN_SCALE) -> np.ndarray:
  """pylearn2's global contrast normalisation of flat images [N, F] (uint8 or float):
  each image minus its mean, then scaled to an L2 norm of ``scale`` (float32)."""
  x = np.asarray(images, np.float32)
  x = x - x.mean(axis=1, keepdims=True)
  norm = np.sqrt((x.astype(np.float64) ** 2).sum(axis=1, keepdims=True))
  return (x * (scale / np.maximum(norm, 1e-8))).astype(np.float32)


def for_display(images: np.ndarray) -> np.ndarray:
  """Normalised images [N, F] mapped to [0, 1] for pictures, each by its own range."""
  x = np.asarray(images, np.float32)
  lo, hi = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)
  return (x - lo) / np.maximum(hi - lo, 1e-8)
