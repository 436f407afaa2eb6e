import dataclasses
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import FEATURES, assert_trees_close, assert_trees_equal, tiny_gan

import gan_jax
from gan_jax import loop as loop_lib

B = 8


@pytest.mark.parametrize("update_rule,k", [("alternating", 2), ("simultaneous", 1)])
def test_scan_of_n_iterations_equals_n_train_step_calls(data, update_rule, k):
  gan = tiny_gan(keep=0.8, update_rule=update_rule, k=k)
  source = gan_jax.ArraySource(len(data))
  state = gan_jax.init_state(gan, jax.random.key(0), data[:2])
  key = jax.random.key(42)
  tl = gan_jax.TrainLoop(gan, source, global_batch=B, steps_per_call=6, parallel="none")
  scanned, metrics = tl(tl.put_state(state), tl.put_data(data), key)

  step = jax.jit(gan_jax.train_step, static_argnums=0)
  inputs = jax.jit(functools.partial(gan_jax.iteration_inputs, gan, source, global_batch=B))
  s, per_step = state, []
  for i in range(6):
    real, noise, rng = inputs(jnp.asarray(data), key, jnp.int32(i))
    s, m = step(gan, s, real, rng, noise=noise)
    per_step.append(m)
  assert int(scanned.step) == int(s.step) == 6
  assert_trees_close(scanned, s, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(metrics["d_loss"], [m["d_loss"] for m in per_step], rtol=1e-5)


@functools.cache
def make_loop(gan, n, parallel, devices, steps):  # one compilation per distinct loop
  return gan_jax.TrainLoop(gan, gan_jax.ArraySource(n), global_batch=B, steps_per_call=steps,
                           parallel=parallel, devices=devices)


def run(gan, data, parallel, *, devices=None, steps=5, seed=1, state=None):
  tl = make_loop(gan, len(data), parallel, tuple(devices) if devices else None, steps)
  state = state if state is not None else gan_jax.init_state(gan, jax.random.key(0), data[:2])
  dstate, metrics = tl(tl.put_state(state), tl.put_data(data), jax.random.key(seed))
  return jax.device_get(tl.get_state(dstate)), jax.device_get(metrics)


@pytest.mark.parametrize("update_rule", ["alternating", "simultaneous"])
def test_pmap_on_4_devices_equals_one_device(data, update_rule):
  assert jax.local_device_count() == 4
  gan = tiny_gan(keep=1.0, update_rule=update_rule)  # dropout masks differ per device
  one, m1 = run(gan, data, "none")
  four, m4 = run(gan, data, "pmap")
  assert_trees_close(four, one, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(m4["g_loss"], m1["g_loss"], rtol=1e-4)


def test_shard_map_equals_pmap_with_dropout_on(data):
  gan = tiny_gan(keep=0.8)
  p, mp = run(gan, data, "pmap")
  s, ms = run(gan, data, "shard_map")
  assert_trees_close(s, p, rtol=1e-6, atol=1e-7)
  for k in mp:
    np.testing.assert_allclose(ms[k], mp[k], rtol=1e-6, err_msg=k)


def test_two_device_pmap_equals_one_device(data):
  gan = tiny_gan(keep=1.0, update_rule="simultaneous")
  one, _ = run(gan, data, "none")
  two, _ = run(gan, data, "pmap", devices=jax.local_devices()[:2])
  assert_trees_close(two, one, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("parallel", ["none", "pmap", "shard_map"])
def test_loop_compiles_once(data, parallel, monkeypatch):
  chex.clear_trace_counter()
  traced = chex.assert_max_traces(n=1)(loop_lib.run_chunk)
  monkeypatch.setattr(loop_lib, "run_chunk", traced)
  gan = tiny_gan(keep=0.8)
  tl = gan_jax.TrainLoop(gan, gan_jax.ArraySource(len(data)), global_batch=B,
                         steps_per_call=3, parallel=parallel)
  dstate, ddata = tl.put_state(gan_jax.init_state(gan, jax.random.key(0), data[:2])), \
      tl.put_data(data)
  for i in range(3):  # new state each call, new key each call: no retrace
    dstate, _ = tl(dstate, ddata, jax.random.key(i))
  assert int(tl.get_state(dstate).step) == 9


def test_run_is_reproducible_and_seed_dependent(data):
  gan = tiny_gan(keep=0.8)
  a, _ = run(gan, data, "pmap", seed=3)
  b, _ = run(gan, data, "pmap", seed=3)
  c, _ = run(gan, data, "pmap", seed=4)
  assert_trees_equal(a, b)
  assert not np.allclose(a.g_params["output"]["kernel"], c.g_params["output"]["kernel"])


def test_chunks_compose(data):
  """Two calls of 3 steps give the state of one call of 6 (keys depend on the step only)."""
  gan = tiny_gan(keep=0.8)
  six, _ = run(gan, data, "none", steps=6)
  three, _ = run(gan, data, "none", steps=3)
  again, _ = run(gan, data, "none", steps=3, state=three)
  assert_trees_close(again, six, rtol=1e-6, atol=1e-7)


def test_permute_index_is_a_permutation_per_epoch():
  for n in (1, 7, 1000, 50_000):
    pos = jnp.arange(n, dtype=jnp.int32)
    perm = np.asarray(loop_lib.permute_index(jnp.uint32(5), jnp.zeros_like(pos), pos, n))
    assert sorted(perm.tolist()) == list(range(n))
  pos = jnp.arange(1000, dtype=jnp.int32)
  e0 = np.asarray(loop_lib.permute_index(jnp.uint32(5), jnp.zeros_like(pos), pos, 1000))
  e1 = np.asarray(loop_lib.permute_index(jnp.uint32(5), jnp.ones_like(pos), pos, 1000))
  assert np.mean(e0 == e1) < 0.05  # a fresh order each epoch
  assert abs(np.corrcoef(e0, np.arange(1000))[0, 1]) < 0.15  # and a shuffled one


def test_array_source_sees_each_example_once_per_epoch():
  n, b = 240, 8
  data = jnp.arange(n, dtype=jnp.float32)[:, None]
  src = gan_jax.ArraySource(n)
  key = jax.random.key(0)
  sample = jax.jit(lambda i, off, c=b: src.sample(data, key, i, off, c, b))
  epoch = np.concatenate([np.asarray(sample(i, 0))[:, 0] for i in range(n // b)])
  assert sorted(epoch.astype(int).tolist()) == list(range(n))
  # A device's share is its slice of the global batch.
  halves = [np.asarray(src.sample(data, key, 3, off, b // 2, b)) for off in (0, b // 2)]
  np.testing.assert_array_equal(np.concatenate(halves), np.asarray(sample(3, 0)))
  # uint8 data are scaled to [0, 1].
  u8 = jnp.full((4, 2), 255, jnp.uint8)
  np.testing.assert_array_equal(gan_jax.ArraySource(4).sample(u8, key, 0, 0, 2, 2), 1.0)


def test_batch_that_does_not_divide_over_devices_is_refused():
  with pytest.raises(ValueError, match="does not divide over the 4 devices"):
    gan_jax.TrainLoop(tiny_gan(), gan_jax.ArraySource(100), global_batch=10, steps_per_call=1)


def test_sampler_source_is_device_count_invariant():
  def ring(key, n):
    return jax.random.normal(key, (n, FEATURES))

  gan = tiny_gan(keep=1.0)
  src = gan_jax.SamplerSource(ring)
  state = gan_jax.init_state(gan, jax.random.key(0), jnp.zeros((2, FEATURES)))
  results = []
  for parallel in ("none", "pmap"):
    tl = gan_jax.TrainLoop(gan, src, global_batch=B, steps_per_call=4, parallel=parallel)
    dstate, _ = tl(tl.put_state(state), None, jax.random.key(1))
    results.append(jax.device_get(tl.get_state(dstate)))
  assert_trees_close(results[1], results[0], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("update_rule", ["alternating", "simultaneous"])
def test_norms_at_some_iterations_only_match_every_step_norms_and_leave_the_update_alone(
    data, update_rule):
  """norms_every=s measures the gradient norms at iterations s, 2s, ... only: the same values
  as measuring them every step, and the same state, bit for bit, as with them on or off."""
  gan = tiny_gan(keep=0.8, update_rule=update_rule)
  state = gan_jax.init_state(gan, jax.random.key(0), data[:2])
  out = {}
  for name, spec, every in (("every", gan, 1), ("third", gan, 3),
                            ("off", dataclasses.replace(gan, grad_norms=False), 1)):
    tl = gan_jax.TrainLoop(spec, gan_jax.ArraySource(len(data)), global_batch=B,
                           steps_per_call=6, parallel="none", norms_every=every)
    dstate, metrics = tl(tl.put_state(state), tl.put_data(data), jax.random.key(5))
    out[name] = jax.device_get((tl.get_state(dstate), metrics))
  for name in ("third", "off"):
    assert_trees_equal(out[name][0], out["every"][0])
    np.testing.assert_array_equal(out[name][1]["d_loss"], out["every"][1]["d_loss"])
  every = out["every"][1]
  for player in ("d", "g"):
    norms = every[f"{player}_grad_norm"]
    assert norms.shape == (6,) and np.all(norms > 0)
    np.testing.assert_allclose(out["third"][1][f"{player}_grad_norm"], norms[[2, 5]], rtol=1e-6)
  assert "d_grad_norm" not in out["off"][1]
  with pytest.raises(ValueError, match="norms_every is 4; it must be >= 1 and divide"):
    gan_jax.TrainLoop(gan, gan_jax.ArraySource(len(data)), global_batch=B, steps_per_call=6,
                      norms_every=4)
