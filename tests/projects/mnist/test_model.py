"""The MNIST project's players: the paper's MLPs, or the DCGAN-style conv pair."""

import types

import jax
import numpy as np
import pytest

import gan_jax
from gan_jax.errors import UserError
from projects.mnist import model
from projects.mnist.configs import mnist


def fake_dataset(n=64):
  rng = np.random.default_rng(0)
  return types.SimpleNamespace(train=rng.integers(0, 256, (n, 784), dtype=np.uint8), dim=784,
                               image_shape=(28, 28, 1))


@pytest.mark.parametrize("name", model.MODELS)
def test_model_name_picks_the_players_and_a_step_trains_them(name):
  config = mnist.get_config("smoke")
  with config.unlocked():
    config.model.name = name
    config.model.conv_features = 8
    config.batch_size = 16
  data = fake_dataset()
  gan = model.make_gan([config], data)
  conv = name == "conv"
  assert isinstance(gan.generator, gan_jax.ConvGenerator if conv else gan_jax.MLPGenerator)
  assert isinstance(gan.discriminator,
                    gan_jax.ConvDiscriminator if conv else gan_jax.MaxoutDiscriminator)
  state = model.initial_state(config, data, gan)
  # The paper's G starts with its output bias at the pixels' marginals; the conv G has no
  # such layer and keeps its own initialisation.
  bias = np.asarray(state.g.params["output"]["bias"])
  if conv:
    assert bias.shape == (1,)
  else:
    np.testing.assert_allclose(
        bias, gan_jax.marginal_output_bias(data.train.mean(0) / 255.0), rtol=1e-6)
  assert bool(state.g.collections) == conv  # BatchNorm statistics for the conv G
  batch = jax.numpy.asarray(data.train[None, :16] / 255.0, jax.numpy.float32)
  new, metrics = jax.jit(gan_jax.train_step, static_argnums=0)(gan, state, batch,
                                                               jax.random.key(1))
  assert np.isfinite(float(metrics["d_loss"])) and np.isfinite(float(metrics["g_loss"]))
  moved = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()),
                       new.g.params, state.g.params)
  assert max(jax.tree.leaves(moved)) > 0


def test_gan_feature_matching_gives_d_its_features_and_g_the_term():
  config = mnist.get_config("smoke")
  with config.unlocked():
    config.gan.feature_matching = 0.5
    config.gan.update_rule = "simultaneous"
    config.batch_size = 16
  data = fake_dataset()
  gan = model.make_gan([config], data)
  assert gan.discriminator.features_out and gan.d_outputs_logits
  assert gan.g_loss == gan_jax.losses.WithFeatureMatching(gan_jax.losses.g_non_saturating, 0.5)
  state = model.initial_state(config, data, gan)
  batch = jax.numpy.asarray(data.train[None, :16] / 255.0, jax.numpy.float32)
  _, metrics = jax.jit(gan_jax.train_step, static_argnums=0)(gan, state, batch,
                                                             jax.random.key(1))
  assert 0 < float(metrics["d_fake"]) < 1 and np.isfinite(float(metrics["g_loss"]))
  with config.unlocked():
    config.model.name = "conv"
  with pytest.raises(UserError, match="has no features_out"):
    model.make_gan([config], data)
