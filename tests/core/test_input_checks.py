"""Shapes, dtypes and keys checked against what init_state saw: each mistake named, with both
shapes, before anything is computed."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import FEATURES, tiny_gan

import gan_jax
from gan_jax.loop import ArraySource, TrainLoop

M = 8
train_step = jax.jit(gan_jax.train_step, static_argnums=0)


def batch(n=M, features=FEATURES, dtype=jnp.float32):
  return jax.random.uniform(jax.random.key(0), (n, features)).astype(dtype)


class TwoOutputD(nn.Module):
  @nn.compact
  def __call__(self, x, *, train=False):
    return nn.Dense(2)(x)


class ColumnD(nn.Module):
  @nn.compact
  def __call__(self, x, *, train=False):
    return nn.Dense(1)(x)  # [B, 1]


@pytest.fixture(scope="module")
def gan_and_state():
  gan = tiny_gan()
  return gan, gan_jax.init_state(gan, jax.random.key(0), batch())


def test_a_stack_of_minibatches_given_to_init_state_is_named():
  with pytest.raises(ValueError, match=rf"shape \(2, 8, {FEATURES}\): a stack.*\[B, {FEATURES}\]"):
    gan_jax.init_state(tiny_gan(), jax.random.key(0), batch()[None].repeat(2, 0))


def test_an_example_unlike_g_s_samples_is_refused_with_both_shapes():
  with pytest.raises(ValueError,
                     match=rf"shape \(8, 3, 4\), but G's samples are \[B, {FEATURES}\]"):
    gan_jax.init_state(tiny_gan(), jax.random.key(0), jnp.zeros((M, 3, 4)))


def test_d_must_give_one_output_per_example():
  with pytest.raises(ValueError, match=r"D's output.*\(2, 2\).*\[B\] or \[B, 1\]"):
    gan_jax.init_state(dataclasses.replace(tiny_gan(), discriminator=TwoOutputD()),
                       jax.random.key(0), batch())


def test_a_column_of_d_outputs_trains_as_a_vector():
  gan = dataclasses.replace(tiny_gan(update_rule="simultaneous"), discriminator=ColumnD())
  state = gan_jax.init_state(gan, jax.random.key(0), batch())
  new, m = train_step(gan, state, batch()[None], jax.random.key(1))
  assert m["d_loss"].shape == () and np.isfinite(m["d_loss"]) and int(new.step) == 1


@pytest.mark.parametrize("update_rule", ["alternating", "simultaneous"])
def test_a_batch_of_another_shape_than_init_state_saw_is_named(update_rule):
  gan = tiny_gan(update_rule=update_rule)
  state = gan_jax.init_state(gan, jax.random.key(0), batch())
  with pytest.raises(ValueError, match=rf"real_batch has shape \(8, 5\), but G's samples have "
                                       rf"shape \(8, {FEATURES}\)"):
    train_step(gan, state, batch(features=5)[None], jax.random.key(1))


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.uint8, jnp.bool_])
def test_integer_batches_are_refused_and_float64_is_read_as_float32(gan_and_state, dtype):
  gan, state = gan_and_state
  with pytest.raises(ValueError, match=f"real_batch has dtype {jnp.dtype(dtype)}"):
    train_step(gan, state, batch(dtype=dtype)[None], jax.random.key(1))
  x64 = np.asarray(batch(), np.float64)
  a, _ = gan_jax.train_step(gan, state, x64[None], jax.random.key(1))
  b, _ = gan_jax.train_step(gan, state, batch()[None], jax.random.key(1))
  np.testing.assert_allclose(a.d_params["output"]["kernel"], b.d_params["output"]["kernel"],
                             rtol=1e-6)


def test_an_int_seed_is_not_a_key(gan_and_state):
  gan, state = gan_and_state
  with pytest.raises(ValueError, match="init_state's rng is 0 .*jax.random.key"):
    gan_jax.init_state(gan, 0, batch())
  with pytest.raises(ValueError, match="train_step's rng .* not a PRNG key"):
    train_step(gan, state, batch()[None], 3)
  with pytest.raises(ValueError, match="g_step's rng"):
    gan_jax.g_step(gan, state, 3, M)
  # Raw uint32 keys are keys.
  gan_jax.init_state(gan, jax.random.PRNGKey(0), batch())


def test_the_loop_refuses_integer_data_other_than_bytes(gan_and_state):
  gan, state = gan_and_state
  loop = TrainLoop(gan, ArraySource(64), global_batch=M, steps_per_call=2, parallel="none")
  with pytest.raises(ValueError, match="training data has dtype int32"):
    loop(loop.put_state(state), loop.put_data(np.ones((64, FEATURES), np.int32)),
         jax.random.key(0))
