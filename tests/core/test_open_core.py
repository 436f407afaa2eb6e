"""The open core: players with variable collections (BatchNorm), G's EMA, losses as functions,
per-replica hyperparameters in the state, one public way to sample, old checkpoints refused."""

import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from conftest import LATENT, assert_trees_close, assert_trees_equal, tiny_gan
from jax import lax

import gan_jax
from gan_jax import losses, optim
from gan_jax.run import checkpoint
from gan_jax.state import LAYOUT_VERSION

SHAPE = (8, 8, 1)
F = 64


def conv_gan(**kw):
  return gan_jax.GAN(
      generator=gan_jax.ConvGenerator(image_shape=SHAPE, features=4),
      discriminator=gan_jax.ConvDiscriminator(image_shape=SHAPE, features=4),
      # SGD, not Adam: a bias before BatchNorm has an exactly-zero gradient, whose rounding
      # noise Adam would scale up to full steps of either sign.
      g_optimizer=optax.sgd(0.05, momentum=0.5), d_optimizer=optax.sgd(0.05, momentum=0.5),
      latent_dim=LATENT, **{"ema_decay": 0.9, **kw})


def real_batches(key, n=1, m=8):
  return jax.random.uniform(key, (n, m, F))


@pytest.fixture(scope="module")
def conv():
  gan = conv_gan()
  return gan, gan_jax.init_state(gan, jax.random.key(0), jnp.zeros((1, F)))


def changed(a, b):
  return any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b),
                                                       strict=True))


def test_batchnorm_statistics_are_state_updated_in_training_and_used_in_inference(conv):
  gan, state = conv
  assert set(state.g.collections) == {"batch_stats"} and state.d.collections == {}
  step = jax.jit(gan_jax.train_step, static_argnums=0)
  new, metrics = step(gan, state, real_batches(jax.random.key(1)), jax.random.key(2))
  assert all(np.isfinite(v) for v in metrics.values())
  assert changed(new.g.collections, state.g.collections)  # running averages moved
  z = jax.random.normal(jax.random.key(3), (5, LATENT))
  # Inference mode: a sample does not depend on the rest of its batch ...
  whole = gan_jax.generate(gan, new, z, ema=False)
  np.testing.assert_allclose(gan_jax.generate(gan, new, z[:1], ema=False), whole[:1], atol=1e-6)
  # ... and it reads the stored statistics.
  shifted = new.replace(g=new.g.replace(collections=jax.tree.map(lambda x: x + 1.0,
                                                                 new.g.collections)))
  assert not np.allclose(gan_jax.generate(gan, shifted, z, ema=False), whole)
  # With ema=None the EMA is used when there is one.
  np.testing.assert_array_equal(gan_jax.generate(gan, new, z),
                                gan_jax.generate(gan, new, z, ema=True))


def test_d_step_leaves_g_bitwise_and_g_step_leaves_d_bitwise(conv):
  gan, state = conv
  after_d, _ = jax.jit(gan_jax.d_step, static_argnums=0)(
      gan, state, real_batches(jax.random.key(1))[0], jax.random.key(2))
  assert_trees_equal((after_d.g, after_d.ema_params), (state.g, state.ema_params))
  assert changed(after_d.d.params, state.d.params)
  after_g, _ = jax.jit(gan_jax.g_step, static_argnums=(0, 3))(gan, state, jax.random.key(3), 8)
  assert_trees_equal(after_g.d, state.d)
  assert changed(after_g.g.params, state.g.params)
  assert changed(after_g.g.collections, state.g.collections)
  assert changed(after_g.ema_params, state.ema_params)


def test_a_d_with_batchnorm_sees_real_and_generated_halves_apart():
  import flax.linen as nn  # pylint: disable=import-outside-toplevel

  class BNDiscriminator(nn.Module):
    @nn.compact
    def __call__(self, x, *, train=False):
      h = nn.BatchNorm(use_running_average=not train)(nn.Dense(6)(x))
      return nn.Dense(1)(nn.relu(h))[:, 0]

  gan = gan_jax.GAN(generator=gan_jax.MLPGenerator(output_dim=F, hidden=(8,)),
                    discriminator=BNDiscriminator(), g_optimizer=optax.sgd(0.1),
                    d_optimizer=optax.sgd(0.1), latent_dim=LATENT)
  state = gan_jax.init_state(gan, jax.random.key(0), jnp.zeros((1, F)))
  new, _ = gan_jax.d_step(gan, state, real_batches(jax.random.key(1))[0], jax.random.key(2))
  stats = new.d.collections["batch_stats"]["BatchNorm_0"]["mean"]
  assert changed(stats, state.d.collections["batch_stats"]["BatchNorm_0"]["mean"])
  after_g, _ = gan_jax.g_step(gan, new, jax.random.key(3), 8)
  assert_trees_equal(after_g.d, new.d)  # D's pass in G's step keeps D's statistics


def test_conv_players_train_under_vmap_own_scan_and_pmap(conv):
  gan, _ = conv
  keys = [jax.random.key(s) for s in range(3)]
  states = [gan_jax.init_state(gan, k, jnp.zeros((1, F))) for k in keys]
  batch = real_batches(jax.random.key(7))
  step = functools.partial(gan_jax.train_step, gan)
  # vmap over 3 replicas = each alone.
  stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
  out, _ = jax.jit(jax.vmap(step, in_axes=(0, None, 0)))(stacked, batch, jnp.stack(keys))
  for i, s in enumerate(states):
    alone, _ = jax.jit(step)(s, batch, keys[i])
    assert_trees_close(jax.tree.map(lambda x, i=i: x[i], out), alone, rtol=1e-5, atol=1e-6)

  # Your own lax.scan over train_step: 3 iterations equal 3 calls.
  def body(s, i):
    return step(s, batch, jax.random.fold_in(keys[0], i))
  scanned, metrics = jax.jit(lambda s: lax.scan(body, s, jnp.arange(3)))(states[0])
  assert metrics["d_loss"].shape == (3,)
  s = states[0]
  for i in range(3):
    s, _ = jax.jit(step)(s, batch, jax.random.fold_in(keys[0], i))
  assert_trees_close(scanned, s, rtol=1e-5, atol=1e-6)

  # pmap over 4 devices: each device a quarter of the batch; gradients, statistics and
  # metrics averaged, so every device holds the same state.
  n = 4
  assert jax.local_device_count() >= n
  rep = jax.tree.map(lambda x: jnp.broadcast_to(x, (n,) + x.shape), states[0])
  shards = batch.reshape(1, n, 2, F).transpose(1, 0, 2, 3)  # [devices, 1, 2, F]
  p_out, p_metrics = jax.pmap(
      lambda s, x, k: gan_jax.train_step(gan, s, x, k, axis_name="b"), axis_name="b",
      in_axes=(0, 0, None))(rep, shards, keys[0])
  # Read back to the host before slicing: indexing a device-sharded array runs a program
  # over all the devices per leaf.
  p_out = jax.device_get(p_out)
  for leaf in jax.tree.leaves(p_out):
    np.testing.assert_allclose(leaf[1:], np.broadcast_to(leaf[:1], leaf.shape)[1:], atol=1e-6)
  assert np.isfinite(p_metrics["d_loss"]).all()
  assert changed(jax.tree.map(lambda x: x[0], p_out.g.collections), states[0].g.collections)


def test_ema_equals_the_average_of_the_parameter_snapshots_by_hand():
  decay = 0.9
  gan = tiny_gan(ema_decay=decay, update_rule="simultaneous")
  state = gan_jax.init_state(gan, jax.random.key(0), np.zeros((1, 12)))
  np.testing.assert_array_equal(state.hparams["ema_decay"], np.float32(decay))
  step = jax.jit(functools.partial(gan_jax.train_step, gan))
  x = jax.random.uniform(jax.random.key(1), (1, 16, 12))
  expect = state.g.params
  for i in range(6):
    state, _ = step(state, x, jax.random.key(i))
    expect = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, expect, state.g.params)
  assert_trees_close(state.ema_params, expect, rtol=1e-5, atol=1e-7)
  assert changed(state.ema_params, state.g.params)
  # Alternating updates: the EMA moves once per G update, not per D update.
  gan = tiny_gan(ema_decay=decay, k=2)
  state = gan_jax.init_state(gan, jax.random.key(0), np.zeros((1, 12)))
  new, _ = gan_jax.train_step(gan, state, jnp.stack([x[0], x[0]]), jax.random.key(9))
  expect = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, state.g.params, new.g.params)
  assert_trees_close(new.ema_params, expect, rtol=1e-6, atol=1e-8)


def test_a_power_ema_weights_update_tau_by_tau_to_the_gamma_plus_one_minus_its_predecessor():
  # With decay (1 - 1/t)^(g+1) at update t the recursion telescopes: after t updates the EMA
  # is sum_tau (tau^(g+1) - (tau-1)^(g+1)) / t^(g+1) * params_tau, weights ~ tau^g.
  gamma, n = 3.0, 6
  gan = tiny_gan(ema_decay=0.99999, ema_power=gamma, update_rule="simultaneous")
  state = gan_jax.init_state(gan, jax.random.key(0), np.zeros((1, 12)))
  step = jax.jit(functools.partial(gan_jax.train_step, gan))
  x = jax.random.uniform(jax.random.key(1), (1, 16, 12))
  snapshots = []
  for i in range(n):
    state, _ = step(state, x, jax.random.key(i))
    snapshots.append(state.g.params)
    if i == 0:  # the first update's decay is 0: the EMA is G itself
      assert_trees_close(state.ema_params, state.g.params, rtol=0, atol=0)
  w = [(t ** (gamma + 1) - (t - 1) ** (gamma + 1)) / n ** (gamma + 1) for t in range(1, n + 1)]
  expect = jax.tree.map(lambda *ps: sum(wi * p for wi, p in zip(w, ps, strict=True)), *snapshots)
  assert_trees_close(state.ema_params, expect, rtol=1e-5, atol=1e-7)
  # ema_decay caps the decay; gamma = 0 leaves it constant.
  got = [float(gan_jax.steps.ema_decay_at(tiny_gan(ema_decay=0.5, ema_power=1.0), 0.5, t))
         for t in (1, 2, 3, 100)]
  np.testing.assert_allclose(got, [0.0, 0.25, 4 / 9, 0.5], rtol=1e-6)
  assert float(gan_jax.steps.ema_decay_at(tiny_gan(), 0.9, 1)) == pytest.approx(0.9)
  with pytest.raises(ValueError, match="ema_decay is 0"):
    tiny_gan(ema_decay=0.0, ema_power=2.0)


@pytest.mark.parametrize("update_rule", ["simultaneous", "alternating"])
def test_grad_norms_off_leaves_the_norms_out_and_the_update_unchanged(update_rule):
  x = jax.random.uniform(jax.random.key(1), (1, 16, 12))
  out = {}
  for on in (True, False):
    gan = tiny_gan(update_rule=update_rule, grad_norms=on)
    state = gan_jax.init_state(gan, jax.random.key(0), np.zeros((1, 12)))
    for i in range(3):
      state, metrics = jax.jit(functools.partial(gan_jax.train_step, gan))(
          state, x, jax.random.key(i))
    out[on] = state, metrics
  assert {"d_grad_norm", "g_grad_norm"} <= set(out[True][1])
  assert not {"d_grad_norm", "g_grad_norm"} & set(out[False][1])
  assert set(out[True][1]) - set(out[False][1]) == {"d_grad_norm", "g_grad_norm"}
  assert_trees_close(out[False][0], out[True][0], rtol=1e-6, atol=1e-7)


def test_no_ema_means_none_in_the_state_and_generate_refuses_ema_true():
  gan = tiny_gan()
  state = gan_jax.init_state(gan, jax.random.key(0), np.zeros((1, 12)))
  assert state.ema_params is None
  z = jnp.zeros((2, LATENT))
  np.testing.assert_array_equal(gan_jax.generate(gan, state, z),
                                gan_jax.generate(gan, state, z, ema=False))
  with pytest.raises(ValueError, match="ema_decay"):
    gan_jax.generate(gan, state, z, ema=True)


def test_ema_state_survives_a_checkpoint_bitwise(tmp_path):
  gan = conv_gan()
  state = gan_jax.init_state(gan, jax.random.key(0), jnp.zeros((1, F)))
  for i in range(2):
    state, _ = gan_jax.train_step(gan, state, real_batches(jax.random.key(i)), jax.random.key(i))
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  try:
    ckpt.save(state)
    back = ckpt.restore(gan_jax.init_state(gan, jax.random.key(5), jnp.zeros((1, F))))
    assert ckpt.metadata(int(state.step))["layout"] == LAYOUT_VERSION
  finally:
    ckpt.close()
  assert_trees_equal(back, jax.device_get(state))
  assert jax.tree.structure(back) == jax.tree.structure(state)


# --- Losses ---------------------------------------------------------------------

REAL, FAKE = np.array([2.0, -1.0]), np.array([0.5, -3.0])


def softplus(x):
  return np.log1p(np.exp(x))


@pytest.mark.parametrize("name,expect", [
    ("bce", 0.5 * (np.mean(softplus(-REAL)) + np.mean(softplus(FAKE)))),
    ("hinge", np.mean(np.maximum(0, 1 - REAL)) + np.mean(np.maximum(0, 1 + FAKE))),
    ("least_squares", 0.5 * (np.mean((REAL - 1) ** 2) + np.mean(FAKE ** 2))),
    ("wasserstein", FAKE.mean() - REAL.mean()),
])
def test_d_losses_against_hand_computed_values(name, expect):
  got = losses.D_LOSSES[name](jnp.asarray(REAL), jnp.asarray(FAKE), real_label=1.0)
  np.testing.assert_allclose(got, expect, rtol=1e-6)


def test_label_smoothing_moves_the_bce_and_least_squares_targets():
  got = losses.D_LOSSES["bce"](jnp.asarray(REAL), jnp.asarray(FAKE), real_label=0.9)
  real_term = np.mean(0.9 * softplus(-REAL) + 0.1 * softplus(REAL))
  np.testing.assert_allclose(got, 0.5 * (real_term + np.mean(softplus(FAKE))), rtol=1e-6)
  got = losses.D_LOSSES["least_squares"](jnp.asarray(REAL), jnp.asarray(FAKE), real_label=0.9)
  np.testing.assert_allclose(got, 0.5 * (np.mean((REAL - 0.9) ** 2) + np.mean(FAKE ** 2)),
                             rtol=1e-6)


@pytest.mark.parametrize("name,expect", [
    ("non_saturating", np.mean(softplus(-FAKE))),
    ("minimax", -np.mean(softplus(FAKE))),
    ("hinge", -FAKE.mean()),
    ("wasserstein", -FAKE.mean()),
    ("least_squares", 0.5 * np.mean((FAKE - 1) ** 2)),
])
def test_g_losses_against_hand_computed_values(name, expect):
  np.testing.assert_allclose(losses.G_LOSSES[name](jnp.asarray(FAKE)), expect, rtol=1e-6)


@pytest.mark.parametrize("name", sorted(set(losses.D_LOSSES) | set(losses.G_LOSSES)))
def test_losses_and_gradients_are_finite_at_plus_minus_1e4(name):
  x = jnp.array([1e4, -1e4, 0.0], jnp.float32)
  if name in losses.D_LOSSES:
    f = lambda r, q: losses.D_LOSSES[name](r, q, real_label=0.9)  # noqa: E731
    value, grads = jax.value_and_grad(f, argnums=(0, 1))(x, -x)
    assert np.isfinite(value) and all(np.isfinite(g).all() for g in grads)
  if name in losses.G_LOSSES:
    g = functools.partial(losses.call_g_loss, losses.G_LOSSES[name], real_out=-x)
    value, grad = jax.value_and_grad(g)(x)
    assert np.isfinite(value) and np.isfinite(grad).all()


def linear_d(w, b):
  return lambda x: x.reshape(x.shape[0], -1) @ w + b


def test_r1_and_gradient_penalty_equal_their_analytic_values_for_a_linear_d():
  rng = np.random.RandomState(0)
  w = jnp.asarray(rng.normal(size=(F,)), jnp.float32)
  real = jnp.asarray(rng.uniform(size=(5, F)), jnp.float32)
  fake = jnp.asarray(rng.uniform(size=(5, F)), jnp.float32)
  sq = float(jnp.sum(w ** 2))
  r1 = losses.R1(gamma=10.0)(linear_d(w, 0.3), real, fake, jax.random.key(0))
  np.testing.assert_allclose(r1, 10.0 / 2 * sq, rtol=1e-5)
  gp = losses.GradientPenalty(weight=10.0)(linear_d(w, 0.3), real, fake, jax.random.key(0))
  np.testing.assert_allclose(gp, 10.0 * (np.sqrt(sq) - 1.0) ** 2, rtol=1e-5)
  # Through a real step: the regulariser's value is in the metrics and changes D's update.
  gan = tiny_gan(d_regularizer=losses.R1(gamma=1.0))
  state = gan_jax.init_state(gan, jax.random.key(0), np.zeros((1, 12)))
  x = jax.random.uniform(jax.random.key(1), (16, 12))
  with_reg, metrics = gan_jax.d_step(gan, state, x, jax.random.key(2))
  assert metrics["d_reg"] > 0
  without, _ = gan_jax.d_step(tiny_gan(), state, x, jax.random.key(2))
  assert changed(with_reg.d.params, without.d.params)


def test_a_callable_loss_is_accepted_and_a_wrong_signature_refused():
  def my_d_loss(real_out, fake_out, *, real_label):
    return jnp.mean(jax.nn.softplus(-real_out)) * real_label + jnp.mean(fake_out ** 2)

  gan = tiny_gan(d_loss=my_d_loss, g_loss=lambda fake: -jnp.mean(fake))
  state = gan_jax.init_state(gan, jax.random.key(0), np.zeros((1, 12)))
  _, metrics = gan_jax.d_step(gan, state, jnp.ones((4, 12)), jax.random.key(1))
  assert np.isfinite(metrics["d_loss"])
  with pytest.raises(ValueError, match="real_label"):
    tiny_gan(d_loss=lambda real, fake: jnp.mean(real))


# --- The spec and per-replica values --------------------------------------------


def test_the_spec_is_frozen_hashable_and_equal_specs_hash_alike():
  a = conv_gan()
  b = dataclasses.replace(a)  # equal fields (optax transformations compare by identity)
  assert hash(a) == hash(b) and a == b
  assert a != dataclasses.replace(a, k=2)
  with pytest.raises(dataclasses.FrozenInstanceError):
    a.k = 2
  assert {a: 1}[b] == 1


def adam(lr):
  return optax.inject_hyperparams(optax.adam)(learning_rate=lr, b1=0.5)


REPLICAS = [dict(g_loss="non_saturating", d_loss="bce", lr=0.05, ema=0.9, label=1.0),
            dict(g_loss="hinge", d_loss="hinge", lr=0.02, ema=0.99, label=1.0),
            dict(g_loss="least_squares", d_loss="least_squares", lr=0.01, ema=0.5, label=0.9)]


def test_a_vmapped_sweep_over_losses_rates_and_ema_decay_equals_each_replica_alone(data):
  def spec(g_loss, d_loss):
    return gan_jax.GAN(
        generator=gan_jax.MLPGenerator(output_dim=12, hidden=(16,), init_scale=0.5),
        discriminator=gan_jax.MaxoutDiscriminator(hidden=(8,), pieces=2, init_scale=0.5,
                                                  input_keep=0.8, hidden_keep=1.0),
        g_optimizer=adam(0.05), d_optimizer=adam(0.05), latent_dim=LATENT,
        g_loss=g_loss, d_loss=d_loss, ema_decay=0.9, k=1)

  group = spec(tuple(r["g_loss"] for r in REPLICAS), tuple(r["d_loss"] for r in REPLICAS))
  hash(group)

  def hp(r):
    return {"g_loss": r["g_loss"], "d_loss": r["d_loss"], "ema_decay": r["ema"],
            "real_label": r["label"], "d_learning_rate": r["lr"], "g_learning_rate": r["lr"]}

  keys = [jax.random.key(i) for i in range(len(REPLICAS))]
  states = [gan_jax.init_state(group, k, data[:1], hparams=hp(r))
            for k, r in zip(keys, REPLICAS, strict=True)]
  np.testing.assert_array_equal([s.hparams["g_loss"] for s in states], [0, 1, 2])
  loop = gan_jax.TrainLoop(group, gan_jax.ArraySource(len(data)), global_batch=16,
                           steps_per_call=10, parallel="none", vmapped=True)
  stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
  out, metrics = loop(loop.put_state(stacked), loop.put_data(data), jnp.stack(keys))
  assert metrics["d_loss"].shape == (3, 10)
  for i, r in enumerate(REPLICAS):
    alone_gan = spec(r["g_loss"], r["d_loss"])
    alone = gan_jax.init_state(alone_gan, keys[i], data[:1], hparams={
        k: v for k, v in hp(r).items() if k not in ("g_loss", "d_loss")})
    one = gan_jax.TrainLoop(alone_gan, gan_jax.ArraySource(len(data)), global_batch=16,
                            steps_per_call=10, parallel="none")
    final, _ = one(one.put_state(alone), one.put_data(data), keys[i])
    got = jax.tree.map(lambda x, i=i: x[i], out)
    assert_trees_close((got.g, got.d, got.ema_params), (final.g, final.d, final.ema_params),
                       rtol=1e-5, atol=1e-6)
  # The replicas did differ.
  assert changed(jax.tree.map(lambda x: x[0], out.g.params),
                 jax.tree.map(lambda x: x[1], out.g.params))


def test_set_hparams_refuses_what_it_cannot_set():
  gan = tiny_gan()  # optax.sgd / optax.adam: no injected learning rate
  state = gan_jax.init_state(gan, jax.random.key(0), np.zeros((1, 12)))
  with pytest.raises(ValueError, match="inject_hyperparams"):
    gan_jax.set_hparams(gan, state, {"d_learning_rate": 0.1})
  with pytest.raises(ValueError, match="choices"):
    gan_jax.set_hparams(gan, state, {"g_loss": "hinge"})
  with pytest.raises(ValueError, match="unknown"):
    gan_jax.set_hparams(gan, state, {"temperature": 1.0})
  scheduled = tiny_gan()
  scheduled = scheduled.__class__(**{**scheduled.__dict__, "d_optimizer": optax.inject_hyperparams(
      optax.sgd)(learning_rate=optax.linear_schedule(0.1, 0.0, 10))})
  state = gan_jax.init_state(scheduled, jax.random.key(0), np.zeros((1, 12)))
  with pytest.raises(ValueError, match="schedule"):
    gan_jax.set_hparams(scheduled, state, {"d_learning_rate": 0.1})
  ok = optim.paper_sgd()
  assert ok.init(jnp.zeros(2)).hyperparams["learning_rate"] == np.float32(0.1)


# --- Checkpoints of the earlier layout --------------------------------------------


def write_layout_1_checkpoint(workdir, step=50):
  """A checkpoint as gan_jax 0.1 wrote it: flat g_params/d_params, no layout recorded."""
  gan = tiny_gan()
  state = gan_jax.init_state(gan, jax.random.key(0), np.zeros((1, 12)))
  tree = jax.device_get({"step": np.asarray(step, np.int32), "g_params": state.g.params,
                         "d_params": state.d.params, "g_opt_state": state.g.opt_state,
                         "d_opt_state": state.d.opt_state})
  tree = jax.tree.map(np.asarray, tree)
  manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"),
                                  options=ocp.CheckpointManagerOptions(create=True),
                                  item_handlers=ocp.StandardCheckpointHandler())
  manager.save(step, args=ocp.args.StandardSave(tree),
               custom_metadata={"sha256": checkpoint.tree_digest(tree)})
  manager.wait_until_finished()
  manager.close()
  return gan, state


def test_a_layout_1_checkpoint_is_refused_in_one_paragraph_and_not_set_aside(tmp_path):
  gan, state = write_layout_1_checkpoint(str(tmp_path))
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  try:
    with pytest.raises(checkpoint.OldLayout, match="layout 1.*another --workdir") as e:
      ckpt.check_layout()
    assert "\n" not in str(e.value)
    with pytest.raises(checkpoint.OldLayout):
      ckpt.restore_latest_valid(state, report=print)
    assert ckpt.all_steps() == [50]  # not moved to damaged_checkpoints
    # Its generator can still be read (for --mode=eval).
    assert_trees_equal(checkpoint.generator_params(ckpt), jax.device_get(state.g.params))
  finally:
    ckpt.close()
