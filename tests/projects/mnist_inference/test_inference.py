"""Learned approximate inference: E inverts a fixed G from G's samples alone; the command
fits it to a trained run and measures latents and reconstructions."""

import json
import os

import jax
import numpy as np
import pytest
from conftest import tiny_gan
from PIL import Image

import gan_jax
from projects.mnist import data as data_lib
from projects.mnist_inference import encoder as encoder_lib, run


def test_e_learns_to_invert_a_fixed_generator_from_its_samples():
  gan = tiny_gan()
  state = gan_jax.init_state(gan, jax.random.key(0), np.zeros((1, 12), np.uint8))
  enc = encoder_lib.Encoder(latent_dim=gan.latent_dim, hidden=(64, 64))
  params, losses = encoder_lib.fit_encoder(gan, state, enc, jax.random.key(1), steps_total=3000,
                                           learning_rate=3e-3, ema=False)
  assert losses[0] > 5 * losses[-1]
  z = gan_jax.sample_latent(gan, jax.random.key(2), (2000,))
  z_hat = encoder_lib.encode(enc, params, gan_jax.generate(gan, state, z, ema=False))
  assert float(np.mean((np.asarray(z_hat) - np.asarray(z)) ** 2)) < 0.1  # prior variance 1


def test_the_encoder_keeps_to_a_uniform_prior_s_box():
  enc = encoder_lib.for_gan(tiny_gan(latent_dist="uniform"), hidden=(8,))
  params = enc.init(jax.random.key(0), np.zeros((1, 12)))
  big = enc.apply(params, 1e4 * np.random.RandomState(0).randn(50, 12).astype(np.float32))
  assert float(np.abs(big).max()) <= np.sqrt(3.0) + 1e-5


@pytest.mark.xdist_group("mnist_classifier")
def test_the_command_fits_e_on_g_samples_only_and_measures_it(mnist_smoke_run, mnist_classifier,
                                                              tfds_dir, tmp_path, monkeypatch,
                                                              xla_optimized):
  """Fitted twice, once with every training and validation image inverted: the same E."""
  from conftest import MNIST_DIR  # pylint: disable=import-outside-toplevel
  args = [f"--gan_workdir={mnist_smoke_run}", "--steps=200", "--hidden=32",
          f"--manual_dir={MNIST_DIR}", f"--data_dir={tfds_dir}",
          f"--classifier_dir={mnist_classifier[1]}"]
  result = run.main(args + [f"--workdir={tmp_path / 'a'}"])
  assert 0.0 < result["latent_mse"] and 0.0 <= result["same_digit"] <= 1.0
  assert 0.0 < result["val_reconstruction_pixel_mse"] and 0.0 <= result["val_same_digit"] <= 1.0
  assert result["classifier_on_test_images"] > 0.98 and result["num_test"] == 10_000
  with open(tmp_path / "a" / "results.json") as f:
    assert json.load(f)["checkpoint"] == result["checkpoint"]
  with Image.open(tmp_path / "a" / "reconstructions.png") as grid:
    assert grid.size == (10 * 30 + 2, 10 * 30 + 2)  # 5 pairs of rows of 10 digits

  load = data_lib.load

  def inverted(cfg):
    ds = load(cfg)
    return ds.__class__(**{**ds.__dict__, "train": 255 - ds.train,
                           "validation": 255 - ds.validation})
  monkeypatch.setattr(data_lib, "load", inverted)
  # The feature classifier is keyed on the training images: measure with the real one.
  monkeypatch.setattr(run.classifier, "load_or_train", lambda *a, **k: mnist_classifier[0])
  run.main(args + [f"--workdir={tmp_path / 'b'}"])
  same = [open(tmp_path / d / "encoder.msgpack", "rb").read() for d in ("a", "b")]
  assert same[0] == same[1]
  assert os.path.getsize(tmp_path / "a" / "encoder.msgpack") > 0
