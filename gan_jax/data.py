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

import dataclasses
import os

import numpy as np

from gan_jax.errors import UserError

DATASETS = ("mnist",)
MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
MNIST_SPLITS = {"train": "train[:50000]", "validation": "train[50000:]", "test": "test"}


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


def load_mnist(*, manual_dir: str = "", data_dir: str = "") -> Dataset:
  """MNIST's three splits as flat uint8 arrays, built by TFDS (offline from ``manual_dir``)."""
  if manual_dir and not os.path.isdir(manual_dir):
    raise _missing_data_error(manual_dir, data_dir,
                              FileNotFoundError(f"{manual_dir} is not a directory"))
  _hide_accelerators_from_tensorflow()
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

  builder = tfds.builder("mnist", data_dir=data_dir or None)
  download_config = tfds.download.DownloadConfig(manual_dir=manual_dir or None)
  try:
    builder.download_and_prepare(download_config=download_config)
  except Exception as e:  # network, missing or corrupt files: all mean "no data"
    raise _missing_data_error(manual_dir, data_dir, e) from e
  arrays = {}
  for name, split in MNIST_SPLITS.items():
    d = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
    arrays[name] = d["image"].reshape(len(d["image"]), -1)
    arrays[f"{name}_labels"] = d["label"].astype(np.int32)
  return Dataset(image_shape=(28, 28, 1), **arrays)


def load(data_cfg) -> Dataset:
  """The data set a config's ``data`` section names."""
  if data_cfg.name not in DATASETS:
    raise UserError(f"config.data.name is {data_cfg.name!r}, which gan_jax does not know; "
                    f"use one of {DATASETS}.")
  return load_mnist(manual_dir=data_cfg.manual_dir, data_dir=data_cfg.data_dir)
