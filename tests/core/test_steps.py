import dataclasses
import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import FEATURES, LATENT, assert_trees_close, assert_trees_equal, tiny_gan

import gan_jax
from gan_jax import losses
from gan_jax.kernels import cpu

M = 8
# The steps with the spec (and g_step's batch size) static, as users jit them.
d_step = jax.jit(gan_jax.d_step, static_argnums=0)
g_step = jax.jit(gan_jax.g_step, static_argnums=(0, 3))
simultaneous_step = jax.jit(gan_jax.simultaneous_step, static_argnums=0)
train_step = jax.jit(gan_jax.train_step, static_argnums=0)
sgd_update = jax.jit(lambda loss, params: jax.tree.map(lambda p, g: p - 0.1 * g, params,
                                                       jax.grad(loss)(params)), static_argnums=0)


def batch(seed=0, n=M):
  return jax.random.uniform(jax.random.key(seed), (n, FEATURES))


def noise(seed=1, n=M):
  return jax.random.normal(jax.random.key(seed), (n, LATENT))


def test_d_step_changes_only_d_and_g_step_changes_only_g():
  gan = tiny_gan(keep=0.8)
  state = gan_jax.init_state(gan, jax.random.key(0), batch())
  after_d, m = jax.jit(functools.partial(gan_jax.d_step, gan))(state, batch(), jax.random.key(1))
  assert_trees_equal(after_d.g_params, state.g_params)
  assert_trees_equal(after_d.g.opt_state, state.g.opt_state)
  kernel = lambda s: s.d_params["hidden_0"]["kernel"]
  assert not np.allclose(kernel(after_d), kernel(state))
  assert set(m) == {"d_loss", "value", "d_real", "d_fake", "d_grad_norm"}

  g_step = functools.partial(gan_jax.g_step, gan, batch_size=M)
  after_g, m = jax.jit(g_step)(state, jax.random.key(2))
  assert_trees_equal(after_g.d_params, state.d_params)
  assert_trees_equal(after_g.d.opt_state, state.d.opt_state)
  assert not np.allclose(after_g.g_params["output"]["kernel"], state.g_params["output"]["kernel"])
  assert set(m) == {"g_loss", "g_grad_norm"}
  assert int(after_d.step) == int(after_g.step) == 0  # only train_step counts iterations


def sgd_gan(**kw):
  """A tiny GAN with plain SGD (lr 0.1) for both players and dropout off."""
  return dataclasses.replace(tiny_gan(**kw), g_optimizer=optax.sgd(0.1),
                             d_optimizer=optax.sgd(0.1))


def manual_losses(gan, state, real, z):
  def d_loss(dp):
    fake = gan.generator.apply({"params": state.g_params}, z)
    rl = gan.discriminator.apply({"params": dp}, real, train=False)
    fl = gan.discriminator.apply({"params": dp}, fake, train=False)
    return losses.discriminator_loss(rl, fl, real_label=gan.real_label)

  def g_loss(gp):
    fake = gan.generator.apply({"params": gp}, z)
    return losses.generator_loss(gan.discriminator.apply({"params": state.d_params}, fake,
                                                         train=False), kind=gan.g_loss)
  return d_loss, g_loss


@pytest.mark.parametrize("g_loss", ["non_saturating", "minimax"])
def test_simultaneous_step_is_one_sgd_step_on_both_players(g_loss):
  gan = sgd_gan(update_rule="simultaneous", g_loss=g_loss, real_label=0.9)
  state = gan_jax.init_state(gan, jax.random.key(0), batch())
  real, z = batch(), noise()
  d_loss, g_loss_fn = manual_losses(gan, state, real, z)
  new, metrics = simultaneous_step(gan, state, real, jax.random.key(3), noise=z)
  expect_d = sgd_update(d_loss, state.d_params)
  expect_g = sgd_update(g_loss_fn, state.g_params)
  assert_trees_close(new.d_params, expect_d, rtol=1e-5, atol=1e-7)
  assert_trees_close(new.g_params, expect_g, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(metrics["d_loss"], d_loss(state.d_params), rtol=1e-6)
  np.testing.assert_allclose(metrics["g_loss"], g_loss_fn(state.g_params), rtol=1e-6)
  np.testing.assert_allclose(metrics["d_grad_norm"],
                             optax.tree.norm(jax.grad(d_loss)(state.d_params)), rtol=1e-5)


def test_alternating_d_step_and_g_step_are_sgd_steps():
  gan = sgd_gan()
  state = gan_jax.init_state(gan, jax.random.key(0), batch())
  real, z = batch(), noise()
  d_loss, _ = manual_losses(gan, state, real, z)
  new, m = d_step(gan, state, real, jax.random.key(3), noise=z)
  expect = sgd_update(d_loss, state.d_params)
  assert_trees_close(new.d_params, expect, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(m["value"], -2 * m["d_loss"], rtol=1e-5)  # real_label = 1
  _, g_loss_fn = manual_losses(gan, new, real, z)
  newer, m = g_step(gan, new, jax.random.key(4), M, noise=z)
  expect = sgd_update(g_loss_fn, new.g_params)
  assert_trees_close(newer.g_params, expect, rtol=1e-5, atol=1e-7)


def test_train_step_runs_k_d_steps_then_one_g_step():
  gan = tiny_gan(keep=0.8, k=2)
  state = gan_jax.init_state(gan, jax.random.key(0), batch())
  reals = jnp.stack([batch(1), batch(2)])
  rng = jax.random.key(9)
  out, metrics = train_step(gan, state, reals, rng)
  s = state
  s, _ = d_step(gan, s, reals[0], jax.random.fold_in(rng, 0))
  s, d_m = d_step(gan, s, reals[1], jax.random.fold_in(rng, 1))
  s, g_m = g_step(gan, s, jax.random.fold_in(rng, 2), M)
  assert int(out.step) == 1
  assert_trees_close(out.d_params, s.d_params, rtol=1e-5, atol=1e-7)
  assert_trees_close(out.g_params, s.g_params, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(metrics["d_loss"], d_m["d_loss"], rtol=1e-5)
  np.testing.assert_allclose(metrics["g_loss"], g_m["g_loss"], rtol=1e-5)
  with pytest.raises(ValueError, match="needs 2"):
    gan_jax.train_step(gan, state, reals[:1], rng)


def test_steps_vmap_over_seeds():
  gan = tiny_gan(keep=0.8, update_rule="simultaneous")
  keys = jax.random.split(jax.random.key(0), 3)
  states = jax.vmap(lambda k: gan_jax.init_state(gan, k, batch()))(keys)
  reals = jnp.stack([batch(i)[None] for i in range(3)])
  step = functools.partial(train_step, gan)
  out, metrics = jax.jit(jax.vmap(functools.partial(gan_jax.train_step, gan)))(states, reals, keys)
  assert metrics["d_loss"].shape == (3,)
  for i in range(3):
    one = jax.tree.map(lambda x, i=i: x[i], states)
    expect, _ = step(one, reals[i], keys[i])
    assert_trees_close(jax.tree.map(lambda x, i=i: x[i], out.g_params), expect.g_params, rtol=1e-5,
                       atol=1e-7)


@pytest.mark.parametrize("update_rule", ["alternating", "simultaneous"])
def test_pmean_over_devices_equals_the_whole_batch(update_rule):
  """4 devices, each a quarter of the batch, equal one call on the whole batch."""
  gan = tiny_gan(update_rule=update_rule)
  state = gan_jax.init_state(gan, jax.random.key(0), batch())
  nz = gan.noise_batches_per_step
  real = batch(5, 16)[None]
  z = jax.random.normal(jax.random.key(6), (nz, 16, LATENT))
  whole, wm = train_step(gan, state, real, jax.random.key(7), noise=z)
  shard = lambda x: x.reshape(x.shape[0], 4, 4, *x.shape[2:]).swapaxes(0, 1)
  par = jax.pmap(lambda s, r, k, z: gan_jax.train_step(gan, s, r, k, axis_name="d", noise=z),
                 axis_name="d", in_axes=(None, 0, None, 0))
  split, sm = jax.device_get(par(state, shard(real), jax.random.key(7), shard(z)))
  assert_trees_close(jax.tree.map(lambda x: x[0], split.d_params), whole.d_params, rtol=1e-5,
                     atol=1e-6)
  assert_trees_close(jax.tree.map(lambda x: x[0], split.g_params), whole.g_params, rtol=1e-5,
                     atol=1e-6)
  for k in wm:
    np.testing.assert_allclose(sm[k][0], wm[k], rtol=1e-4, err_msg=k)


@pytest.mark.parametrize("kwargs,match", [
    (dict(k=0), "k is 0"),
    (dict(update_rule="simultaneous", k=2), "k=1"),
    (dict(update_rule="sometimes"), "update_rule"),
    (dict(g_loss="hinged"), "g_loss"),
    (dict(d_loss="cross_entropy"), "d_loss"),
    (dict(ema_decay=1.0), "ema_decay"),
    (dict(d_regularizer=3.0), "d_regularizer"),
    (dict(g_loss=["minimax"]), "g_loss"),
    (dict(real_label=1.5), "real_label"),
    (dict(latent_dist="cauchy"), "latent_dist"),
])
def test_bad_specs_are_rejected_with_the_field_named(kwargs, match):
  with pytest.raises(ValueError, match=match):
    tiny_gan(**kwargs)


def test_uniform_latent_has_unit_variance():
  gan = tiny_gan()
  z = gan_jax.sample_latent(gan, jax.random.key(0), (20000,))
  assert z.shape == (20000, LATENT)
  assert float(jnp.abs(z).max()) <= 3**0.5
  np.testing.assert_allclose(np.var(np.asarray(z), axis=0), 1.0, atol=0.03)


def test_join_adds_an_exact_zero_even_beside_nan_and_inf():
  tree = {"a": jnp.array([1.5, -2.0]), "b": jnp.array([[jnp.nan, 3.0]]),
          "c": jnp.array([jnp.inf]), "empty": jnp.zeros((0,))}
  out = jax.jit(cpu.join)(tree)
  assert_trees_equal(out, tree)  # NaN == NaN here: assert_array_equal treats them as equal
  assert np.isinf(out["c"][0]) and not np.isnan(out["a"]).any()


def _kernel_copies_in_loop_bodies(hlo: str, shapes: set[str]) -> list[str]:
  """The copies of weight-shaped float32 arrays inside the while-loop bodies of ``hlo``."""
  bodies = set(re.findall(r"body=%?([\w.\-]+)", hlo))
  found, current = [], None
  for line in hlo.splitlines():
    head = re.match(r"^(?:ENTRY )?%?([\w.\-]+) ", line)
    if head and line.rstrip().endswith("{"):
      current = head.group(1)
    elif current in bodies:
      copy = re.search(r"= (f32\[[\d,]+\])\{[^}]*\} copy\(", line)
      if copy and copy.group(1) in shapes:
        found.append(copy.group(1))
  return found


def _compiled_chunk(gan, state, data, kernels):
  """(weight copies in the loop, state, metrics) of 5 scanned iterations with ``kernels``."""
  shapes = {"f32[" + ",".join(map(str, x.shape)) + "]"
            for x in jax.tree.leaves((state.g.params, state.d.params)) if x.ndim == 2}
  chunk = jax.jit(functools.partial(gan_jax.loop.run_chunk, gan, gan_jax.ArraySource(len(data)),
                                    num_steps=5, global_batch=M, kernels=kernels))
  compiled = chunk.lower(state, data, jax.random.key(1)).compile()
  return (_kernel_copies_in_loop_bodies(compiled.as_text(), shapes),
          *compiled(state, data, jax.random.key(1)))


@pytest.mark.parametrize("update_rule", ["alternating", "simultaneous"])
def test_the_cpu_kernels_update_weights_in_place_and_change_no_update(update_rule):
  # With the plain kernels a backward pass's read of a weight (of the layer above, or D's
  # for G's gradient) is not an ancestor of that weight's update, and XLA copies the weight
  # at the top of every iteration. The CPU kernels' join: no copies, the same state.
  data = np.random.RandomState(0).randint(0, 256, (240, FEATURES)).astype(np.uint8)
  gan = tiny_gan(keep=0.8, update_rule=update_rule, ema_decay=0.9)
  state = gan_jax.init_state(gan, jax.random.key(0), data[:2])
  cpu_copies, cpu_state, cpu_metrics = _compiled_chunk(gan, state, data, "cpu")
  plain_copies, plain_state, plain_metrics = _compiled_chunk(gan, state, data, "plain")
  assert plain_copies, "the check no longer sees the copies it guards against"
  assert cpu_copies == []
  assert_trees_equal(cpu_state, plain_state)
  assert_trees_close(cpu_metrics, plain_metrics, rtol=1e-6)


@pytest.mark.parametrize("update_rule", ["alternating", "simultaneous"])
def test_bf16_players_need_no_join_to_update_in_place(update_rule, monkeypatch):
  # Players computing with bfloat16 copies read their float32 weights only to convert
  # them, before any gradient: without the join the loop still copies no weight, and the
  # state is the joined one's.
  data = np.random.RandomState(0).randint(0, 256, (240, FEATURES)).astype(np.uint8)
  gan = tiny_gan(keep=0.8, update_rule=update_rule, ema_decay=0.9)
  gan = dataclasses.replace(gan, generator=gan.generator.clone(dtype=jnp.bfloat16),
                            discriminator=gan.discriminator.clone(dtype=jnp.bfloat16))
  state = gan_jax.init_state(gan, jax.random.key(0), data[:2])
  joins, real_join = [], cpu.join
  monkeypatch.setattr(cpu, "join", lambda tree: joins.append(tree) or real_join(tree))
  unjoined = _compiled_chunk(gan, state, data, "cpu")
  assert joins == [] and unjoined[0] == []
  monkeypatch.setattr(cpu, "_computes_in_bf16", lambda module: False)
  joined = _compiled_chunk(gan, state, data, "cpu")
  assert joins
  assert_trees_equal(unjoined[1], joined[1])
  assert_trees_close(unjoined[2], joined[2], rtol=1e-6)


@pytest.mark.parametrize("d_loss", ["hinge", "wasserstein", "least_squares",
                                    ("non_saturating", "hinge"), "own"])
def test_a_critic_s_metrics_are_its_mean_outputs_not_probabilities(d_loss):
  """D(x), D(G(z)) and V(D, G) mean something only when D's output is the BCE game's logit;
  for a critic the steps report its mean raw outputs on data and on samples instead."""
  if d_loss == "own":
    def d_loss(real_out, fake_out, *, real_label):  # a user's own loss: a critic's
      return jnp.mean(jax.nn.softplus(-real_out)) + jnp.mean(fake_out ** 2)
  gan = tiny_gan(d_loss=d_loss, g_loss="non_saturating", update_rule="simultaneous")
  assert not gan.d_outputs_logits
  state = gan_jax.init_state(gan, jax.random.key(0), batch())
  z = noise()
  _, m = gan_jax.simultaneous_step(gan, state, batch(), jax.random.key(1), noise=z)
  assert set(m) == {"d_loss", "g_loss", "critic_real", "critic_fake", "d_grad_norm",
                    "g_grad_norm"}
  d = lambda x: gan.discriminator.apply({"params": state.d_params}, x, train=False)
  fake = gan.generator.apply({"params": state.g_params}, z)
  # Without dropout (tiny_gan's keep is 1) the training-mode outputs are these.
  np.testing.assert_allclose(m["critic_real"], jnp.mean(d(batch())), rtol=1e-5)
  np.testing.assert_allclose(m["critic_fake"], jnp.mean(d(fake)), rtol=1e-5)
  assert tiny_gan(d_loss="bce").d_outputs_logits
  assert tiny_gan(d_loss=("bce", "minimax")).d_outputs_logits


def test_feature_matching_adds_to_g_s_gradient_only_and_at_weight_0_changes_nothing():
  """G's loss with the feature-matching term: at weight 0 the same update as the plain game,
  bit for bit; above 0 the same D update and another G update, and G's loss is the plain one
  plus the weight times the squared gap between the minibatch means of D's features."""
  plain_gan = tiny_gan(update_rule="simultaneous")
  featured = dataclasses.replace(plain_gan,
                                 discriminator=plain_gan.discriminator.clone(features_out=True),
                                 d_loss=losses.OnLogit(losses.discriminator_loss))
  state = gan_jax.init_state(plain_gan, jax.random.key(0), batch())
  z, rng = noise(), jax.random.key(3)
  base, base_m = simultaneous_step(plain_gan, state, batch(), rng, noise=z)
  for weight in (0.0, 5.0):
    gan = dataclasses.replace(featured, g_loss=losses.WithFeatureMatching(
        losses.g_non_saturating, weight))
    assert gan.d_outputs_logits and gan.g_loss_sees_real
    new, m = simultaneous_step(gan, state, batch(), rng, noise=z)
    assert_trees_equal(new.d_params, base.d_params)
    assert m["d_real"] == base_m["d_real"] and m["d_fake"] == base_m["d_fake"]
    if weight == 0.0:
      assert_trees_equal(new.g_params, base.g_params)
      continue
    assert not np.allclose(new.g_params["output"]["kernel"], base.g_params["output"]["kernel"])
    d = featured.discriminator
    fake = gan.generator.apply({"params": state.g_params}, z)
    features = [d.apply({"params": state.d_params}, x, train=False)["features"]
                for x in (fake, batch())]
    gap = features[0].mean(0) - features[1].mean(0)
    np.testing.assert_allclose(m["g_loss"], base_m["g_loss"] + weight * np.sum(gap ** 2),
                               rtol=1e-5)
