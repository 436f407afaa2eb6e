"""A D of one's own with structured outputs (class logits and features) and losses of one's
own that read them and the data's labels: the library's steps carry them unchanged, in both
update rules and in the scan loop (the semi-supervised GAN of Salimans et al. 2016)."""

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


class G(nn.Module):
  @nn.compact
  def __call__(self, z, *, cond=None, train=False):  # the labels reach the losses only
    return nn.sigmoid(nn.Dense(FEATURES)(nn.relu(nn.Dense(16)(z))))


class KClassD(nn.Module):
  @nn.compact
  def __call__(self, x, *, cond=None, train=False):
    features = nn.relu(nn.Dense(8)(x))
    return {"logits": nn.Dense(CLASSES)(features), "features": features}


def ssl_d_loss(real_out, fake_out, *, real_label, cond):
  """Cross-entropy on the labelled rows (label >= 0), and real against fake with the
  logit logsumexp(class logits) (the fake class's logit fixed at 0)."""
  logp = jax.nn.log_softmax(real_out["logits"])
  labelled = cond >= 0
  picked = jnp.take_along_axis(logp, jnp.maximum(cond, 0)[:, None], axis=1)[:, 0]
  ce = -jnp.sum(jnp.where(labelled, picked, 0.0)) / jnp.maximum(jnp.sum(labelled), 1)
  lse = lambda o: jax.nn.logsumexp(o["logits"], axis=-1)  # noqa: E731
  return ce + losses.discriminator_loss(lse(real_out), lse(fake_out), real_label=real_label)


def feature_matching(fake_out, *, real_out, cond):
  """D's mean features on the unlabelled rows of data (label -1) against the samples'."""
  unlabelled = (cond < 0)[:, None]
  real = jnp.sum(jnp.where(unlabelled, real_out["features"], 0.0), 0) / jnp.sum(unlabelled)
  return jnp.sum(jnp.square(real - jnp.mean(fake_out["features"], 0)))


def ssl_gan(**kw):
  kw = {"d_loss": ssl_d_loss, "g_loss": feature_matching, **kw}
  return gan_jax.GAN(generator=G(), discriminator=KClassD(), g_optimizer=optax.sgd(0.1),
                     d_optimizer=optax.sgd(0.1), latent_dim=LATENT, **kw)


def batch(seed=0):
  x = jax.random.uniform(jax.random.key(seed), (M, FEATURES))
  labels = jnp.where(jnp.arange(M) < 3, jnp.arange(M) % CLASSES, -1).astype(jnp.int32)
  return x, labels


def sgd(loss, params):
  return jax.tree.map(lambda p, g: p - 0.1 * g, params, jax.grad(loss)(params))


@pytest.mark.parametrize("update_rule", ["alternating", "simultaneous"])
def test_structured_outputs_and_labels_reach_losses_of_one_s_own(update_rule):
  gan = ssl_gan(update_rule=update_rule)
  (x, c), z = batch(), jax.random.normal(jax.random.key(1), (M, LATENT))
  state = gan_jax.init_state(gan, jax.random.key(0), (x, c))
  nz = jnp.stack([z] * gan.noise_batches_per_step)
  new, metrics = jax.jit(gan_jax.train_step, static_argnums=0)(
      gan, state, (x[None], c[None]), jax.random.key(2), noise=nz)
  g = lambda gp: gan.generator.apply({"params": gp}, z)  # noqa: E731
  d = lambda dp, v: gan.discriminator.apply({"params": dp}, v)  # noqa: E731
  expect_d = sgd(lambda dp: ssl_d_loss(d(dp, x), d(dp, g(state.g_params)), real_label=1.0,
                                       cond=c), state.d_params)
  d_seen = expect_d if update_rule == "alternating" else state.d_params
  expect_g = sgd(lambda gp: feature_matching(d(d_seen, g(gp)), real_out=d(d_seen, x), cond=c),
                 state.g_params)
  assert_trees_close(new.d_params, expect_d, rtol=1e-5, atol=1e-7)
  assert_trees_close(new.g_params, expect_g, rtol=1e-5, atol=1e-7)
  assert set(metrics) - {"d_grad_norm", "g_grad_norm"} == {"d_loss", "g_loss"}  # no D(x)
  # Other labels (the hidden ones shown), another update of both: both losses read them.
  other, _ = gan_jax.train_step(gan, state, (x[None], (c[None] + 1) % CLASSES),
                                jax.random.key(2), noise=nz)
  assert not np.allclose(other.d_params["Dense_1"]["kernel"], new.d_params["Dense_1"]["kernel"])
  if update_rule == "simultaneous":  # G's gradient reads the old D: only the labels differ
    other, _ = gan_jax.train_step(gan, state, (x[None], c.at[3].set(0)[None]),
                                  jax.random.key(2), noise=nz)
    assert not np.allclose(other.g_params["Dense_0"]["kernel"], new.g_params["Dense_0"]["kernel"])


def test_the_scan_loop_trains_a_semi_supervised_d():
  gan = ssl_gan()
  x = jax.random.uniform(jax.random.key(3), (64, FEATURES))
  labels = jnp.where(jnp.arange(64) < 12, jnp.arange(64) % CLASSES, -1).astype(jnp.int32)
  loop = TrainLoop(gan, ArraySource(64), global_batch=M, steps_per_call=5, parallel="none")
  state = gan_jax.init_state(gan, jax.random.key(0), (x[:M], labels[:M]))
  dstate, metrics = loop(loop.put_state(state), loop.put_data((x, labels)), jax.random.key(1))
  assert metrics["d_loss"].shape == (5,) and np.all(np.isfinite(metrics["g_loss"]))
  assert int(loop.get_state(dstate).step) == 5


def test_structured_outputs_with_a_built_in_loss_or_no_labels_are_refused():
  x, c = batch()
  with pytest.raises(ValueError, match=r"the built-in losses and regularisers take \[B\]"):
    gan_jax.init_state(ssl_gan(g_loss="non_saturating"), jax.random.key(0), (x, c))
  gan = ssl_gan()
  state = gan_jax.init_state(gan, jax.random.key(0), (x, c))
  with pytest.raises(ValueError, match=r"reads the data's condition \(cond\), but the real"):
    gan_jax.d_step(gan, state, x, jax.random.key(1))


def test_a_d_loss_that_cannot_take_the_condition_is_refused_by_name():
  def two_args_only(real_out, cond):
    return jnp.mean(real_out)
  with pytest.raises(ValueError, match=r"d_loss\(real_out, fake_out, \*, real_label\[, cond\]\)"):
    losses.resolve(two_args_only, "d")
