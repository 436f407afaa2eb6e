"""Conditional GANs: a batch (x, cond) gives its condition to both players, in every step and
under jit, vmap, pmap and the scan loop, with no step of one's own."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import FEATURES, LATENT, assert_trees_close

import gan_jax
from gan_jax import losses
from gan_jax.loop import ArraySource, TrainLoop

CLASSES, M = 3, 8


class CondG(nn.Module):
  @nn.compact
  def __call__(self, z, *, cond, train=False):
    h = jnp.concatenate([z, jax.nn.one_hot(cond, CLASSES)], axis=-1)
    return nn.sigmoid(nn.Dense(FEATURES)(nn.relu(nn.Dense(16)(h))))


class CondD(nn.Module):
  @nn.compact
  def __call__(self, x, *, cond, train=False):
    h = jnp.concatenate([x, 3.0 * jax.nn.one_hot(cond, CLASSES)], axis=-1)
    return nn.Dense(1)(nn.relu(nn.Dense(8)(h)))[:, 0]


def cond_gan(**kw):
  return gan_jax.GAN(generator=CondG(), discriminator=CondD(), g_optimizer=optax.sgd(0.1),
                     d_optimizer=optax.sgd(0.1), latent_dim=LATENT, **kw)


def batch(seed=0, n=M):
  x = jax.random.uniform(jax.random.key(seed), (n, FEATURES))
  return x, jnp.arange(n, dtype=jnp.int32) % CLASSES


def sgd(loss, params):
  return jax.tree.map(lambda p, g: p - 0.1 * g, params, jax.grad(loss)(params))


@pytest.mark.parametrize("update_rule", ["alternating", "simultaneous"])
def test_the_condition_reaches_both_players(update_rule):
  gan = cond_gan(update_rule=update_rule)
  (x, c), z = batch(), jax.random.normal(jax.random.key(1), (M, LATENT))
  state = gan_jax.init_state(gan, jax.random.key(0), (x, c))
  nz = jnp.stack([z] * gan.noise_batches_per_step)
  new, _ = jax.jit(gan_jax.train_step, static_argnums=0)(gan, state, (x[None], c[None]),
                                                        jax.random.key(2), noise=nz)
  g = lambda gp, cc: gan.generator.apply({"params": gp}, z, cond=cc)  # noqa: E731
  d = lambda dp, v, cc: gan.discriminator.apply({"params": dp}, v, cond=cc)  # noqa: E731
  d_loss = lambda dp: losses.discriminator_loss(d(dp, x, c), d(dp, g(state.g_params, c), c))  # noqa: E731
  expect_d = sgd(d_loss, state.d_params)
  d_seen = expect_d if update_rule == "alternating" else state.d_params
  expect_g = sgd(lambda gp: losses.g_non_saturating(d(d_seen, g(gp, c), c)), state.g_params)
  assert_trees_close(new.d_params, expect_d, rtol=1e-5, atol=1e-7)
  assert_trees_close(new.g_params, expect_g, rtol=1e-5, atol=1e-7)
  # Other labels, another update: the condition is not ignored.
  other, _ = gan_jax.train_step(gan, state, (x[None], (c[None] + 1) % CLASSES),
                                jax.random.key(2), noise=nz)
  assert not np.allclose(other.g_params["Dense_0"]["kernel"], new.g_params["Dense_0"]["kernel"])


def test_samples_per_class_and_a_condition_of_the_wrong_size():
  gan = cond_gan()
  state = gan_jax.init_state(gan, jax.random.key(0), batch())
  z = jax.random.normal(jax.random.key(1), (CLASSES, LATENT))
  per_class = gan_jax.generate(gan, state, jnp.repeat(z[:1], CLASSES, 0),
                               cond=jnp.arange(CLASSES))
  assert per_class.shape == (CLASSES, FEATURES)
  assert not np.allclose(per_class[0], per_class[1])  # same z, another class
  x, c = batch()
  with pytest.raises(ValueError, match=r"condition has shape \(7,\) but its data \(8, 12\)"):
    gan_jax.d_step(gan, state, (x, c[:7]), jax.random.key(3))


def test_conditional_steps_under_vmap_pmap_and_the_scan_loop():
  gan = cond_gan(update_rule="simultaneous")
  x, c = batch(5, 16)
  keys = jax.random.split(jax.random.key(0), 2)
  states = jax.vmap(lambda k: gan_jax.init_state(gan, k, (x, c)))(keys)
  step = jax.vmap(lambda s, k: gan_jax.train_step(gan, s, (x[None], c[None]), k))
  out, metrics = jax.jit(step)(states, keys)
  assert metrics["d_loss"].shape == (2,)
  # pmap over 4 devices, a quarter of the batch and its conditions each, equals the whole.
  state = jax.tree.map(lambda v: v[0], states)
  z = jax.random.normal(jax.random.key(6), (1, 16, LATENT))
  whole, _ = gan_jax.train_step(gan, state, (x[None], c[None]), keys[0], noise=z)
  shard = lambda v: v.reshape(v.shape[0], 4, 4, *v.shape[2:]).swapaxes(0, 1)  # noqa: E731
  par = jax.pmap(lambda s, b, k, z: gan_jax.train_step(gan, s, b, k, axis_name="d", noise=z),
                 axis_name="d", in_axes=(None, 0, None, 0))
  split, _ = par(state, (shard(x[None]), shard(c[None])), keys[0], shard(z))
  assert_trees_close(jax.tree.map(lambda v: v[0], split.g_params), whole.g_params, rtol=1e-5,
                     atol=1e-6)
  # The scan loop draws (x, labels) pairs from the data on device.
  images = (np.arange(64 * FEATURES).reshape(64, FEATURES) % 255).astype(np.uint8)
  labels = np.arange(64, dtype=np.int32) % CLASSES
  loop = TrainLoop(dataclasses.replace(gan), ArraySource(64), global_batch=M, steps_per_call=3,
                   parallel="none")
  dstate, m = loop(loop.put_state(state), loop.put_data((images, labels)), jax.random.key(1))
  assert int(loop.get_state(dstate).step) == 3 and np.isfinite(m["d_loss"]).all()
