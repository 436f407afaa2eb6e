"""Data checks: the MNIST source files (TFDS checksums) and the decoded-array cache."""

import os
import shutil

import numpy as np
import pytest
from conftest import MNIST_DIR, needs_mnist

from gan_jax.errors import UserError
from projects.mnist import data

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


def test_the_probed_source_is_the_one_tfds_downloads_from():
  from tensorflow_datasets.image_classification import mnist  # pylint: disable=import-outside-toplevel
  assert data.MNIST_SOURCE_URL == mnist._MNIST_URL  # pylint: disable=protected-access


def test_offline_without_manual_dir_gives_the_paragraph_within_15_s(tmp_path):
  """The network made unreachable by a proxy that refuses every connection."""
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  import time  # pylint: disable=import-outside-toplevel

  from conftest import ROOT  # pylint: disable=import-outside-toplevel
  dead = "http://127.0.0.1:9"  # the discard port: nothing listens
  env = {**os.environ, "HTTPS_PROXY": dead, "HTTP_PROXY": dead, "https_proxy": dead,
         "http_proxy": dead, "NO_PROXY": "", "no_proxy": ""}
  t0 = time.time()
  result = subprocess.run(
      [sys.executable, "launch.py", "--config=experiments/mnist.py:smoke",
       f"--workdir={tmp_path / 'run'}", f"--config.data.data_dir={tmp_path / 'tfds'}"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  elapsed = time.time() - t0
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert "cannot be reached" in result.stderr and "config.data.manual_dir" in result.stderr
  assert elapsed < 15, elapsed
