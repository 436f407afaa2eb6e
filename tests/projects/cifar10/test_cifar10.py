"""The CIFAR-10 project: a small archive in CIFAR's own binary format, prepared by TFDS,
split and normalised as the authors' runs; both configs train end to end from it."""

import io
import os
import pathlib
import subprocess
import sys
import tarfile

import jax
import numpy as np
import pytest

from benchmarks.common import load_config
from gan_jax.errors import UserError
from projects.cifar10 import data, experiment, model

ROOT = pathlib.Path(__file__).resolve().parents[3]
PER_BATCH, TEST = 12, 10  # images in each of the five training files, and in the test file
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")


def images_and_labels(n, seed):
  rng = np.random.RandomState(seed)
  return rng.randint(0, 256, (n, 32, 32, 3)).astype(np.uint8), rng.randint(0, 10, n)


def write_archive(folder, seed=0):
  """cifar-10-binary.tar.gz as CIFAR publishes it: records of one label byte and the image
  as three 32x32 planes (red, green, blue), five training files and one test file."""
  def records(images, labels):
    planes = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    return np.concatenate([labels[:, None].astype(np.uint8), planes], axis=1).tobytes()

  files, kept = {}, {}
  for i in range(1, 6):
    x, y = images_and_labels(PER_BATCH, seed + i)
    files[f"data_batch_{i}.bin"], kept[f"train_{i}"] = records(x, y), (x, y)
  x, y = images_and_labels(TEST, seed + 99)
  files["test_batch.bin"], kept["test"] = records(x, y), (x, y)
  files["batches.meta.txt"] = ("\n".join(CLASSES) + "\n").encode()
  os.makedirs(folder, exist_ok=True)
  with tarfile.open(os.path.join(folder, data.ARCHIVE), "w:gz") as tar:
    for name, body in files.items():
      info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
      info.size = len(body)
      tar.addfile(info, io.BytesIO(body))
  return kept


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
  folder = tmp_path_factory.mktemp("cifar_archive")
  return str(folder), write_archive(str(folder))


def test_the_archive_is_read_split_and_normalised_as_the_authors_did(archive, tmp_path):
  folder, kept = archive
  ds = data.load_cifar10(manual_dir=folder, data_dir=str(tmp_path), verify_checksum=False)
  n_train = 5 * PER_BATCH
  assert (len(ds.train), len(ds.validation), len(ds.test)) == (n_train * 4 // 5, n_train // 5,
                                                                TEST)
  assert ds.train.shape[1] == 3072 and ds.train.dtype == np.uint8
  # Every image comes back whole, in height-width-channel order, with its label.
  written = {np.asarray(x).tobytes(): int(y)
             for key in kept for x, y in zip(*kept[key], strict=True)}
  for split in ("train", "validation", "test"):
    for x, y in zip(getattr(ds, split), getattr(ds, f"{split}_labels"), strict=True):
      assert written[x.reshape(32, 32, 3).tobytes()] == y
  normalised = data.gcn(ds.train)
  np.testing.assert_allclose(normalised.mean(1), 0.0, atol=1e-4)
  np.testing.assert_allclose(np.linalg.norm(normalised, axis=1), data.GCN_SCALE, rtol=1e-5)
  # A second load reads the verified cache, not TFDS.
  again = data.load_cifar10(manual_dir="", data_dir=str(tmp_path))
  np.testing.assert_array_equal(again.test, ds.test)


def test_a_manual_dir_without_the_archive_is_one_paragraph(tmp_path):
  with pytest.raises(UserError, match=r"must hold CIFAR's own binary archive "
                     r"cifar-10-binary.tar.gz.*--config.data.manual_dir"):
    data.load_cifar10(manual_dir=str(tmp_path), data_dir=str(tmp_path / "tfds"))


def test_a_foreign_archive_fails_the_checksum_and_prepares_nothing(archive, tmp_path):
  folder, _ = archive
  with pytest.raises(UserError, match=r"is not CIFAR's published cifar-10-binary.tar.gz"):
    data.load_cifar10(manual_dir=folder, data_dir=str(tmp_path))
  assert not list(tmp_path.rglob(data.CACHE_NAME))


def test_the_configs_are_the_authors_yaml():
  fc, conv = (load_config(f"experiments/cifar10_{n}.py") for n in ("fully_connected",
                                                                     "convolutional"))
  for c, batch, lr in ((fc, 100, 0.025), (conv, 128, 0.004)):
    assert (c.batch_size, c.optimizer.learning_rate, c.optimizer.decay_factor) == (batch, lr,
                                                                                    1.000004)
    assert (c.optimizer.init_momentum, c.optimizer.final_momentum) == (0.5, 0.7)
    assert (c.model.discriminator.input_keep, c.model.discriminator.hidden_keep) == (0.8, 0.5)
    assert tuple(c.model.generator.hidden) == (8000, 8000)
    assert c.model.generator.activations == "relu,sigmoid"
  assert (tuple(fc.model.discriminator.hidden), fc.model.discriminator.pieces) == ((1600, 1600),
                                                                                  5)
  assert tuple(conv.model.generator.deconv) == (10, 10, 80, 5, 3)
  assert tuple(conv.model.discriminator.conv_channels) == (32, 32, 192)
  assert data.SPLITS["train"] == "train[:80%]"  # 40,000 of CIFAR's 50,000


@pytest.mark.parametrize("name", ["fully_connected", "convolutional"])
def test_the_authors_players_have_their_shapes(name):
  config = load_config(f"experiments/cifar10_{name}.py")
  g, d = model.make_players(config)
  z = np.zeros((2, 100), np.float32)
  g_vars = jax.eval_shape(g.init, jax.random.key(0), z)
  out = jax.eval_shape(g.apply, g_vars, z)
  assert out.shape == (2, 3072)
  x = jax.ShapeDtypeStruct((2, 3072), np.float32)
  d_vars = jax.eval_shape(lambda: d.init(jax.random.key(0), np.zeros((2, 3072)), train=False))
  assert jax.eval_shape(lambda v, x: d.apply(v, x, train=False), d_vars, x).shape == (2,)
  sizes = {"/".join(map(str, p)): np.prod(v.shape) for p, v in
           jax.tree_util.tree_leaves_with_path(g_vars["params"])}
  assert sum(sizes.values()) > 8000 * 8000  # the authors' 8000-unit hidden layers


def test_the_smoke_config_trains_from_a_small_archive_end_to_end(archive, tmp_path):
  """The convolutional pair (its G holds the fully connected G's layers) through launch.py."""
  folder, name = archive[0], "convolutional"
  workdir = tmp_path / "run"
  out = subprocess.run(
      [sys.executable, "launch.py", f"--config=experiments/cifar10_{name}.py:smoke",
       f"--workdir={workdir}", f"--config.data.manual_dir={folder}",
       f"--config.data.data_dir={tmp_path / 'tfds'}", "--config.data.verify_checksum=False"],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "step 20/20" in out.stdout
  grid = workdir / "samples" / "step_0000020.png"
  from PIL import Image  # pylint: disable=import-outside-toplevel
  width, height = Image.open(grid).size
  assert (height, width) == (experiment.ROWS * 34 + 2, (experiment.COLS + 1) * 34 + 2)
  assert (workdir / "checkpoints").is_dir()
