"""The researcher's API: G losses that read D's outputs on data, and steps of one's own
composed from the library's public pieces."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import FEATURES, LATENT, assert_trees_close, tiny_gan

import gan_jax
from gan_jax import losses

M = 8


def batch(seed=0, n=M):
  return jax.random.uniform(jax.random.key(seed), (n, FEATURES))


def noise(seed=1, n=M):
  return jax.random.normal(jax.random.key(seed), (n, LATENT))


def sgd_gan(**kw):
  return dataclasses.replace(tiny_gan(**kw), g_optimizer=optax.sgd(0.1),
                             d_optimizer=optax.sgd(0.1))


def expected_g_params(gan, state, real, z, g_loss):
  """G's params after one SGD(0.1) step on ``g_loss(D(G(z)), real_out=D(real))``."""
  def loss(gp):
    fake = gan.generator.apply({"params": gp}, z)
    d = lambda x: gan.discriminator.apply({"params": state.d_params}, x, train=False)
    return g_loss(d(fake), real_out=d(real))
  return jax.tree.map(lambda p, g: p - 0.1 * g, state.g_params, jax.grad(loss)(state.g_params))


@pytest.mark.parametrize("update_rule", ["alternating", "simultaneous"])
def test_a_relativistic_g_loss_sees_d_s_outputs_on_the_step_s_data(update_rule):
  gan = sgd_gan(update_rule=update_rule, g_loss="relativistic", d_loss="relativistic")
  assert gan.g_loss_sees_real and not gan.d_outputs_logits
  state = gan_jax.init_state(gan, jax.random.key(0), batch())
  real, z = batch(), noise()
  nz = jnp.stack([z] * gan.noise_batches_per_step)
  new, metrics = jax.jit(gan_jax.train_step, static_argnums=0)(gan, state, real[None],
                                                               jax.random.key(3), noise=nz)
  # Alternating: G's step reads D after its update; simultaneous: D before it.
  d_seen = new if update_rule == "alternating" else state
  expect = expected_g_params(gan, d_seen.replace(g=state.g), real, z, losses.g_relativistic)
  assert_trees_close(new.g_params, expect, rtol=1e-5, atol=1e-7)
  assert set(metrics) >= {"critic_real", "critic_fake", "g_loss"}
  assert "value" not in metrics


def test_a_g_loss_of_one_s_own_with_real_out_is_detected_by_its_signature():
  def feature_matching(fake_out, *, real_out):  # first moments of D's outputs
    return jnp.square(jnp.mean(fake_out) - jnp.mean(real_out))

  gan = sgd_gan(g_loss=feature_matching)
  assert gan.g_loss_sees_real and not sgd_gan().g_loss_sees_real
  state = gan_jax.init_state(gan, jax.random.key(0), batch())
  real, z = batch(), noise()
  new, _ = gan_jax.g_step(gan, state, jax.random.key(1), M, noise=z, real_batch=real)
  assert_trees_close(new.g_params, expected_g_params(gan, state, real, z, feature_matching),
                     rtol=1e-5, atol=1e-7)
  with pytest.raises(ValueError, match="real_batch"):
    gan_jax.g_step(gan, state, jax.random.key(1), M, noise=z)
  # Choices by replica mix both kinds of loss.
  both = sgd_gan(g_loss=("non_saturating", feature_matching))
  s = gan_jax.init_state(both, jax.random.key(0), batch(), hparams={"g_loss": 1})
  new_both, _ = gan_jax.g_step(both, s, jax.random.key(1), M, noise=z, real_batch=real)
  assert_trees_close(new_both.g_params, new.g_params, rtol=1e-6, atol=1e-7)


def test_a_g_loss_that_cannot_be_called_so_is_refused_by_name():
  with pytest.raises(ValueError, match=r"g_loss\(fake_out, \*, real_out\[, cond\]\)"):
    sgd_gan(g_loss=lambda fake_out, real_out, extra: 0.0)
  with pytest.raises(ValueError, match=r"g_loss\(fake_out, \*, real_out\[, cond\]\)"):
    sgd_gan(g_loss=lambda fake_out, *, cond: 0.0)  # the condition of data it does not read


def test_a_custom_g_step_composed_of_the_public_pieces_equals_g_step():
  """apply_player + d_outputs + update_player (which moves the EMA) rebuild g_step."""
  gan = dataclasses.replace(tiny_gan(ema_decay=0.9))
  state = gan_jax.init_state(gan, jax.random.key(0), batch())
  z = noise()

  def my_g_step(state, z):
    def loss(gp):
      fake, cols = gan_jax.apply_player(gan.generator, state.g, z, train=True, params=gp)
      out, _ = gan_jax.apply_player(gan.discriminator, state.d, fake, train=True)
      return losses.g_non_saturating(out), cols
    (value, cols), grads = jax.value_and_grad(loss, has_aux=True)(state.g.params)
    state, norms = gan_jax.update_player(gan, state, "g", grads, cols)
    return state, {"g_loss": value, **norms}

  mine, my_metrics = jax.jit(my_g_step)(state, z)
  theirs, metrics = gan_jax.g_step(gan, state, jax.random.key(1), M, noise=z)
  assert_trees_close(mine.g_params, theirs.g_params, rtol=1e-6, atol=1e-7)
  assert_trees_close(mine.ema_params, theirs.ema_params, rtol=1e-6, atol=1e-7)
  assert not np.allclose(mine.ema_params["output"]["kernel"], state.ema_params["output"]["kernel"])
  for key in metrics:
    np.testing.assert_allclose(my_metrics[key], metrics[key], rtol=1e-6)
  # And D's half: d_outputs gives D's outputs on data and samples.
  fake = gan_jax.generate(gan, state, z)
  real_out, fake_out, _ = gan_jax.d_outputs(gan, state.d, batch(), fake, jax.random.key(2))
  assert real_out.shape == fake_out.shape == (M,)
  with pytest.raises(ValueError, match="'d' or 'g'"):
    gan_jax.update_player(gan, state, "D", state.d.params)
