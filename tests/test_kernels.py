"""The iteration's rewritten pieces against the forms they replaced: the maxout gradient
(models._maxout), the gradient norms (steps.global_norm) and the bf16 weight gradient
(models._weight_gradient)."""

import functools
import pathlib
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import assert_trees_close

import gan_jax
from gan_jax import build, loop as loop_lib, models, steps
from test_models import _maxout_by_fold

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from benchmarks.common import load_config  # noqa: E402


def test_global_norm_is_optax_tree_norm():
  tree = {"kernel": jax.random.normal(jax.random.key(0), (784, 1200)),
          "conv": jax.random.normal(jax.random.key(1), (4, 4, 3, 8)),
          "bias": jax.random.normal(jax.random.key(2), (1200,)), "scalar": jnp.float32(-3.0)}
  np.testing.assert_allclose(steps.global_norm(tree), optax.tree.norm(tree), rtol=1e-6)
  assert np.isnan(steps.global_norm({**tree, "bias": tree["bias"].at[7].set(jnp.nan)}))


def test_a_chunk_of_the_paper_model_matches_the_earlier_maxout_and_norm(monkeypatch):
  """20 iterations of the paper's MNIST update (narrowed) with the rewritten pieces, and
  with the earlier ones: same parameters and metrics up to float rounding."""
  config = load_config("experiments/mnist.py")
  config.model.generator.hidden, config.model.discriminator.hidden = (64, 64), (32, 32)
  config.gan.ema_decay = 0.999
  gan = build.make_gan(config, data_dim=784, batches_per_epoch=10)
  data = np.random.RandomState(0).randint(0, 256, (500, 784)).astype(np.uint8)

  def run():
    state = gan_jax.init_state(gan, jax.random.key(0), data[:2])
    chunk = jax.jit(functools.partial(loop_lib.run_chunk, gan, gan_jax.ArraySource(len(data)),
                                      num_steps=20, global_batch=50))
    return chunk(state, jnp.asarray(data), jax.random.key(1))

  new_state, new_metrics = run()
  monkeypatch.setattr(models, "_maxout", _maxout_by_fold)
  monkeypatch.setattr(steps, "global_norm", optax.tree.norm)
  old_state, old_metrics = run()
  assert_trees_close(new_state.g.params, old_state.g.params, rtol=1e-4, atol=1e-6)
  assert_trees_close(new_state.d.params, old_state.d.params, rtol=1e-4, atol=1e-6)
  assert_trees_close(new_state.ema_params, old_state.ema_params, rtol=1e-4, atol=1e-6)
  assert_trees_close(new_metrics, old_metrics, rtol=1e-4, atol=1e-6)
  assert not np.allclose(new_state.d.params["hidden_0"]["kernel"],
                         gan_jax.init_state(gan, jax.random.key(0), data[:2]).d.params[
                             "hidden_0"]["kernel"])


def test_bf16_dot_general_rounds_operands_only_and_keeps_float32_gradients():
  x = jax.random.normal(jax.random.key(0), (2, 6, 40))
  w = jax.random.normal(jax.random.key(1), (40, 24))
  dims = (((2,), (0,)), ((), ()))
  got = models.bf16_dot_general(x, w, dims)
  rounded = lambda a: a.astype(jnp.bfloat16).astype(jnp.float32)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, np.einsum("abk,kn->abn", rounded(x), rounded(w)), rtol=1e-5,
                             atol=1e-5)
  ct = jax.random.normal(jax.random.key(2), got.shape)
  dx, dw = jax.grad(lambda x, w: jnp.sum(models.bf16_dot_general(x, w, dims) * ct),
                    argnums=(0, 1))(x, w)
  assert dx.dtype == dw.dtype == jnp.float32
  np.testing.assert_allclose(dx, np.einsum("abn,kn->abk", rounded(ct), rounded(w)), rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_allclose(dw, np.einsum("abk,abn->kn", rounded(x), rounded(ct)), rtol=1e-5,
                             atol=1e-4)
  # bfloat16 inputs get bfloat16 input gradients.
  assert jax.grad(lambda x: jnp.sum(models.bf16_dot_general(x, w, dims)))(
      x.astype(jnp.bfloat16)).dtype == jnp.bfloat16
  with pytest.raises(ValueError, match="Dense's product only"):
    models.bf16_dot_general(x, w, (((1,), (0,)), ((), ())))


def test_bf16_weight_gradient_matches_the_plain_product_at_any_row_count():
  plain = lambda x, ct: jax.lax.dot_general(x, ct, (((0,), (0,)), ((), ())),
                                            preferred_element_type=jnp.float32)
  for n in (7, 100, 128):  # padded by 25, 28 and 32 rows
    x = jax.random.normal(jax.random.key(n), (n, 48)).astype(jnp.bfloat16)
    ct = jax.random.normal(jax.random.key(n + 1), (n, 40)).astype(jnp.bfloat16)
    got = jax.jit(models._weight_gradient)(x, ct)
    assert got.shape == (48, 40) and got.dtype == jnp.float32
    np.testing.assert_allclose(got, plain(x, ct), rtol=1e-5, atol=1e-5)
  # Under vmap, as in a sweep's replicas.
  xs = jax.random.normal(jax.random.key(0), (3, 100, 48)).astype(jnp.bfloat16)
  cts = jax.random.normal(jax.random.key(1), (3, 100, 40)).astype(jnp.bfloat16)
  np.testing.assert_allclose(jax.vmap(models._weight_gradient)(xs, cts),
                             jax.vmap(plain)(xs, cts), rtol=1e-5, atol=1e-5)


def test_the_paper_model_in_bf16_compute_tracks_float32():
  """The players with bf16 products: float32 parameters and outputs, within bf16 rounding of
  the float32 players at the same parameters, and a chunk of training that stays close."""
  config = load_config("experiments/mnist.py")
  config.model.generator.hidden, config.model.discriminator.hidden = (64, 64), (32, 32)
  data = np.random.RandomState(0).randint(0, 256, (500, 784)).astype(np.uint8)
  out = {}
  for dtype in ("float32", "bfloat16"):
    config.model.dtype = dtype
    gan = build.make_gan(config, data_dim=784, batches_per_epoch=10)
    assert gan.join_updates == (dtype == "float32")
    state = gan_jax.init_state(gan, jax.random.key(0), data[:2])
    z = jax.random.normal(jax.random.key(3), (16, 100))
    samples = gan_jax.generate(gan, state, z)
    chunk = jax.jit(functools.partial(loop_lib.run_chunk, gan, gan_jax.ArraySource(len(data)),
                                      num_steps=20, global_batch=50))
    state, metrics = chunk(state, jnp.asarray(data), jax.random.key(1))
    out[dtype] = samples, state, metrics
  (s32, _, m32), (s16, st16, m16) = out["float32"], out["bfloat16"]
  assert s16.dtype == jnp.float32 and np.abs(s16 - s32).max() < 0.02
  for leaf in jax.tree.leaves((st16.g.params, st16.d.params, st16.g.opt_state)):
    assert leaf.dtype != jnp.bfloat16
  np.testing.assert_allclose(m16["d_loss"], m32["d_loss"], rtol=0.02)
  np.testing.assert_allclose(m16["g_loss"], m32["g_loss"], rtol=0.02)


def _grads_of(module, params, x, ct):
  def loss(params, x):
    return jnp.sum(module.apply({"params": params}, x) * ct)
  return module.apply({"params": params}, x), jax.grad(loss, argnums=(0, 1))(params, x)


@pytest.mark.parametrize("shape,features,strides", [((3, 14, 14, 8), 16, (2, 2)),
                                                    ((2, 7, 9, 5), 3, (2, 2)),
                                                    ((2, 7, 9, 5), 4, (1, 1))])
def test_convolutions_with_a_matmul_kernel_gradient_equal_flax_s(shape, features, strides):
  x = jax.random.normal(jax.random.key(0), shape)
  for ours, flax in (
      (nn.Conv(features, (4, 4), strides, conv_general_dilated=models.conv_general_dilated),
       nn.Conv(features, (4, 4), strides)),
      (models.ConvTranspose(features, (4, 4), strides), nn.ConvTranspose(features, (4, 4),
                                                                         strides))):
    params = flax.init(jax.random.key(1), x)["params"]
    assert jax.tree.map(jnp.shape, ours.init(jax.random.key(1), x)["params"]) == \
        jax.tree.map(jnp.shape, params)
    ct = jax.random.normal(jax.random.key(2), flax.apply({"params": params}, x).shape)
    (y, (dp, dx)), (y2, (dp2, dx2)) = _grads_of(flax, params, x, ct), _grads_of(
        ours, params, x, ct)
    np.testing.assert_allclose(y2, y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx2, dx, rtol=1e-4, atol=1e-4)
    assert_trees_close(dp2, dp, rtol=1e-4, atol=1e-4)
  # Under vmap, as a sweep runs it.
  conv = nn.Conv(features, (4, 4), strides, conv_general_dilated=models.conv_general_dilated)
  params = conv.init(jax.random.key(1), x)["params"]
  grad = jax.vmap(lambda x: jax.grad(lambda p: jnp.sum(conv.apply({"params": p}, x) ** 2))(
      params))(jnp.stack([x, 2 * x]))
  single = jax.grad(lambda p: jnp.sum(conv.apply({"params": p}, 2 * x) ** 2))(params)
  assert_trees_close(jax.tree.map(lambda a: a[1], grad), single, rtol=1e-4, atol=1e-3)
