"""BatchNorm under data parallelism, and its statistics for the EMA of G."""

import flax.linen as nn
import jax
import numpy as np
import optax
from conftest import FEATURES, LATENT, assert_trees_close

import gan_jax

HIDDEN = 6


class BatchNormG(nn.Module):
  """Dense -> BatchNorm -> Dense: a G whose BatchNorm input is easy to compute by hand.
  ``axis_name`` left at None: the step sets it."""

  axis_name: str | None = None

  @nn.compact
  def __call__(self, z, *, train=False):
    h = nn.Dense(HIDDEN, name="hidden")(z)
    h = nn.BatchNorm(use_running_average=not train, momentum=0.9, axis_name=self.axis_name,
                     name="bn")(h)
    return nn.sigmoid(nn.Dense(FEATURES, name="output")(nn.relu(h)))


class PerDeviceBatchNormG(BatchNormG):
  """The same G taking no axis from the step: each device normalises its own slice."""

  @nn.compact
  def __call__(self, z, *, train=False):
    return BatchNormG(axis_name=None, name="inner").__call__(z, train=train)


def gan(g=None, **kw):
  return gan_jax.GAN(generator=g or BatchNormG(),
                     discriminator=gan_jax.MaxoutDiscriminator(
                         hidden=(8,), pieces=2, input_keep=1.0, hidden_keep=1.0),
                     g_optimizer=optax.sgd(0.1), d_optimizer=optax.sgd(0.1), latent_dim=LATENT,
                     **kw)


def one_vs_four_devices(spec, update_rule):
  spec = gan(spec, update_rule=update_rule)
  real = jax.random.uniform(jax.random.key(5), (1, 16, FEATURES))
  state = gan_jax.init_state(spec, jax.random.key(0), real[0])
  z = jax.random.normal(jax.random.key(6), (spec.noise_batches_per_step, 16, LATENT))
  whole, _ = jax.jit(gan_jax.train_step, static_argnums=0)(spec, state, real, jax.random.key(7),
                                                          noise=z)
  shard = lambda x: x.reshape(x.shape[0], 4, 4, *x.shape[2:]).swapaxes(0, 1)
  par = jax.pmap(lambda s, r, k, z: gan_jax.train_step(spec, s, r, k, axis_name="d", noise=z),
                 axis_name="d", in_axes=(None, 0, None, 0))
  split, _ = jax.device_get(par(state, shard(real), jax.random.key(7), shard(z)))
  return whole, jax.tree.map(lambda x: x[0], split)


def test_batchnorm_on_four_devices_is_batchnorm_on_the_whole_batch():
  for update_rule in ("alternating", "simultaneous"):
    whole, split = one_vs_four_devices(BatchNormG(), update_rule)
    assert_trees_close(split.g_params, whole.g_params, rtol=1e-5, atol=1e-6)
    assert_trees_close(split.d_params, whole.d_params, rtol=1e-5, atol=1e-6)
    assert_trees_close(split.g.collections, whole.g.collections, rtol=1e-5, atol=1e-6)
  # A G that takes no axis from the step normalises per device, and differs.
  whole, split = one_vs_four_devices(PerDeviceBatchNormG(), "simultaneous")
  var = lambda s: s.g.collections["batch_stats"]["inner"]["bn"]["var"]
  assert not np.allclose(var(split), var(whole), rtol=1e-4, atol=1e-5)


def test_the_same_module_runs_under_plain_jit():
  spec = gan(BatchNormG())
  real = jax.random.uniform(jax.random.key(5), (8, FEATURES))
  state = gan_jax.init_state(spec, jax.random.key(0), real)
  new, m = jax.jit(gan_jax.train_step, static_argnums=0)(spec, state, real[None],
                                                        jax.random.key(1))
  assert np.isfinite(m["g_loss"]) and int(new.step) == 1


def test_estimate_collections_gives_the_ema_s_own_batch_statistics():
  spec = gan(BatchNormG(), ema_decay=0.5)
  real = jax.random.uniform(jax.random.key(5), (8, FEATURES))
  state = gan_jax.init_state(spec, jax.random.key(0), real)
  step = jax.jit(gan_jax.train_step, static_argnums=0)
  for i in range(3):
    state, _ = step(spec, state, real[None], jax.random.key(i))
  key, n, b = jax.random.key(11), 4, 32
  stats = gan_jax.estimate_collections(spec, state, key, num_batches=n, batch_size=b)
  # By hand: the EMA's pre-BatchNorm activations on the same noise batches.
  hidden = state.ema_params["hidden"]
  pre = [gan_jax.sample_latent(spec, k, (b,)) @ hidden["kernel"] + hidden["bias"]
         for k in jax.random.split(key, n)]
  mean = np.mean([np.mean(h, 0) for h in pre], 0)
  var = np.mean([np.var(h, 0) for h in pre], 0)
  np.testing.assert_allclose(stats["batch_stats"]["bn"]["mean"], mean, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(stats["batch_stats"]["bn"]["var"], var, rtol=1e-4, atol=1e-5)
  assert not np.allclose(state.g.collections["batch_stats"]["bn"]["mean"], mean, atol=1e-3)
  z = jax.random.normal(jax.random.key(3), (5, LATENT))
  with_own = gan_jax.generate(spec, state, z, ema=True, collections=stats)
  with_raw = gan_jax.generate(spec, state, z, ema=True)
  assert with_own.shape == (5, FEATURES) and not np.allclose(with_own, with_raw)
  # The driver samples the EMA with its own statistics.
  from gan_jax.run.experiment import generate  # pylint: disable=import-outside-toplevel
  own = gan_jax.estimate_collections(spec, state, jax.random.key(0))
  np.testing.assert_allclose(generate(spec, state, z, ema=True),
                             gan_jax.generate(spec, state, z, ema=True, collections=own),
                             rtol=1e-5, atol=1e-6)
  assert gan_jax.estimate_collections(gan(gan_jax.MLPGenerator(output_dim=FEATURES)),
                                      gan_jax.init_state(gan(gan_jax.MLPGenerator(
                                          output_dim=FEATURES)), key, real), key,
                                      ema=False) == {}
