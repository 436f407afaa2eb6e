"""Data checks: the MNIST source files (TFDS checksums) and the decoded-array cache."""

import os
import shutil

import numpy as np
import pytest
from conftest import MNIST_DIR, needs_mnist

from gan_jax import data
from gan_jax.errors import UserError

pytestmark = needs_mnist


def test_corrupted_mnist_file_is_named(tmp_path):
  manual = tmp_path / "mnist"
  shutil.copytree(MNIST_DIR, manual)
  bad = manual / "train-labels-idx1-ubyte.gz"
  os.chmod(bad, 0o644)
  raw = bytearray(bad.read_bytes())
  raw[1000] ^= 0xFF  # one flipped byte
  bad.write_bytes(bytes(raw))
  with pytest.raises(UserError, match=rf"The MNIST file {bad} is corrupted or not the original: "
                                      r"its checksum does not match"):
    data.load_mnist(manual_dir=str(manual), data_dir=str(tmp_path / "tfds"))
  assert not os.path.exists(tmp_path / "tfds" / "mnist" / data.MNIST_VERSION / data.CACHE_NAME)


def test_missing_mnist_file_is_named(tmp_path):
  manual = tmp_path / "mnist"
  shutil.copytree(MNIST_DIR, manual)
  os.remove(manual / "t10k-images-idx3-ubyte.gz")
  with pytest.raises(UserError, match=r"Missing there: t10k-images-idx3-ubyte\.gz\."):
    data.load_mnist(manual_dir=str(manual), data_dir=str(tmp_path / "tfds"))


def test_cache_is_verified_and_rebuilt_when_damaged(mnist, tfds_dir, tmp_path):
  copy = tmp_path / "tfds"
  shutil.copytree(os.path.join(tfds_dir, "mnist"), copy / "mnist")
  cache = copy / "mnist" / data.MNIST_VERSION / data.CACHE_NAME
  assert cache.exists()  # written when the session's MNIST was first loaded
  with np.load(cache) as f:
    arrays = {k: f[k] for k in f.files}
  arrays["train"] = arrays["train"].copy()
  arrays["train"][0, 0] += 1  # altered pixels, stale digest
  np.savez(cache, **arrays)
  again = data.load_mnist(manual_dir=MNIST_DIR, data_dir=str(copy))  # from TFDS's files
  np.testing.assert_array_equal(again.train, mnist.train)
  np.testing.assert_array_equal(again.test_labels, mnist.test_labels)
  assert data._read_cache(str(cache)) is not None  # rewritten, and valid
