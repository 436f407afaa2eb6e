"""The kernel switch, and each CPU kernel against the plain one it replaces."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import assert_trees_close

import gan_jax
from benchmarks.common import load_config  # noqa: E402
from gan_jax import kernels, loop as loop_lib
from gan_jax.kernels import cpu, plain
from gan_jax.run import build


@pytest.mark.parametrize("platform,auto", [("cpu", "cpu"), ("gpu", "plain"), ("cuda", "plain"),
                                           ("tpu", "plain"), ("rocm", "plain")])
def test_the_switch_takes_the_cpu_rewrites_on_cpus_only(platform, auto):
  assert kernels.choose("auto", platform) == auto
  assert kernels.choose("plain", platform) == "plain"
  assert kernels.choose("cpu", platform) == "cpu"
  with pytest.raises(ValueError, match="use one of"):
    kernels.choose("fast", platform)


@pytest.mark.parametrize("platform,flags,speedup,dtype", [
    ("cpu", {"fma", "avx2"}, 3.0, "float32"), ("cpu", {"avx2", "avx512_bf16"}, 1.6, "bfloat16"),
    ("cpu", {"avx2", "avx512_bf16"}, 0.57, "float32"),
    ("cpu", {"amx_bf16", "amx_tile"}, 1.9, "bfloat16"), ("cpu", {"asimd", "bf16"}, 1.5, "bfloat16"),
    ("cpu", set(), 3.0, "float32"), ("gpu", set(), 0.5, "bfloat16"),
    ("tpu", set(), 0.5, "bfloat16")])
def test_the_auto_dtype_takes_bfloat16_only_where_the_hardware_multiplies_it_faster(
    monkeypatch, platform, flags, speedup, dtype):
  monkeypatch.setattr(kernels, "cpu_flags", lambda: frozenset(flags))
  timed = []
  monkeypatch.setattr(kernels, "bf16_speedup", lambda: timed.append(1) or speedup)
  assert kernels.compute_dtype("auto", platform) == dtype
  # Products are timed only on CPUs whose flags name bfloat16 units.
  assert bool(timed) == (platform == "cpu" and bool(flags & kernels.BF16_CPU_FLAGS))
  assert kernels.compute_dtype("float32", platform) == "float32"
  assert kernels.compute_dtype("bfloat16", platform) == "bfloat16"
  with pytest.raises(ValueError, match="use one of"):
    kernels.compute_dtype("float16", platform)


def test_the_auto_dtype_reads_this_machine_s_flags_and_the_players_get_it(monkeypatch):
  with open("/proc/cpuinfo", encoding="utf-8") as f:
    assert ("avx2" in kernels.cpu_flags()) == (" avx2" in f.read())
  speedup = kernels.bf16_speedup()  # this machine's own timing
  assert 0.05 < speedup < 50 and kernels.bf16_speedup() == speedup  # timed once
  cfg = load_config("experiments/mnist_fast.py")
  assert cfg.model.dtype == "auto"
  for flags, timed, dtype in (({"avx2"}, 2.0, jnp.float32), ({"avx512_bf16"}, 2.0, jnp.bfloat16),
                              ({"avx512_bf16"}, 0.6, jnp.float32)):
    monkeypatch.setattr(kernels, "cpu_flags", lambda flags=flags: frozenset(flags))
    monkeypatch.setattr(kernels, "bf16_speedup", lambda timed=timed: timed)
    gan = build.make_gan(cfg, data_dim=784, batches_per_epoch=250)
    assert gan.generator.dtype == dtype and gan.discriminator.dtype == dtype


def test_the_switch_follows_the_devices_the_loop_uses():
  class Device:  # what the choice reads of a device
    def __init__(self, platform):
      self.platform = platform
  assert kernels.for_devices("auto", [Device("gpu"), Device("gpu")]) == "plain"
  assert kernels.for_devices("auto", jax.devices()) == "cpu"
  gan = gan_jax.GAN(gan_jax.MLPGenerator(output_dim=4, hidden=(8,)),
                    gan_jax.MaxoutDiscriminator(hidden=(4,), pieces=2),
                    optax.sgd(0.1), optax.sgd(0.1), latent_dim=2)
  loop = gan_jax.TrainLoop(gan, gan_jax.ArraySource(8), global_batch=4, steps_per_call=1,
                           parallel="none")
  assert loop.kernels_used == "cpu"
  assert gan_jax.TrainLoop(gan, gan_jax.ArraySource(8), global_batch=4, steps_per_call=1,
                           parallel="none", kernels="plain").kernels_used == "plain"
  # Players left at "auto" follow the step; a player's own choice stands.
  d = gan.discriminator
  assert kernels.bind(d, "cpu").kernels == "cpu"
  assert kernels.bind(d.clone(kernels="plain"), "cpu").kernels == "plain"


def test_the_paper_model_on_mnist_trains_the_same_with_either_kernel_set(mnist):
  """20 iterations of experiments/mnist.py on MNIST, plain kernels against the CPU ones."""
  config = load_config("experiments/mnist.py")
  gan = build.make_gan(config, data_dim=784, batches_per_epoch=500)
  state = gan_jax.init_state(gan, jax.random.key(0), mnist.train[:2])
  out = {}
  for k in ("plain", "cpu"):
    loop = gan_jax.TrainLoop(gan, gan_jax.ArraySource(len(mnist.train)), global_batch=100,
                             steps_per_call=20, parallel="none", kernels=k)
    out[k] = loop(loop.put_state(state), loop.put_data(mnist.train), jax.random.key(1))
  (plain_state, plain_metrics), (cpu_state, cpu_metrics) = out["plain"], out["cpu"]
  assert_trees_close(cpu_state, plain_state, rtol=1e-5, atol=1e-7)
  assert_trees_close(cpu_metrics, plain_metrics, rtol=1e-5, atol=1e-7)
  assert not np.allclose(cpu_state.d.params["hidden_0"]["kernel"],
                         state.d.params["hidden_0"]["kernel"])


def test_global_norm_is_optax_tree_norm():
  tree = {"kernel": jax.random.normal(jax.random.key(0), (784, 1200)),
          "conv": jax.random.normal(jax.random.key(1), (4, 4, 3, 8)),
          "bias": jax.random.normal(jax.random.key(2), (1200,)), "scalar": jnp.float32(-3.0)}
  np.testing.assert_allclose(cpu.global_norm(tree), plain.global_norm(tree), rtol=1e-6)
  assert np.isnan(cpu.global_norm({**tree, "bias": tree["bias"].at[7].set(jnp.nan)}))


@pytest.mark.parametrize("k", [plain, cpu])
def test_bf16_dot_general_rounds_operands_only_and_keeps_float32_gradients(k):
  x = jax.random.normal(jax.random.key(0), (2, 6, 40))
  w = jax.random.normal(jax.random.key(1), (40, 24))
  dims = (((2,), (0,)), ((), ()))
  got = k.bf16_dot_general(x, w, dims)
  rounded = lambda a: a.astype(jnp.bfloat16).astype(jnp.float32)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, np.einsum("abk,kn->abn", rounded(x), rounded(w)), rtol=1e-5,
                             atol=1e-5)
  ct = jax.random.normal(jax.random.key(2), got.shape)
  dx, dw = jax.grad(lambda x, w: jnp.sum(k.bf16_dot_general(x, w, dims) * ct),
                    argnums=(0, 1))(x, w)
  assert dx.dtype == dw.dtype == jnp.float32
  np.testing.assert_allclose(dx, np.einsum("abn,kn->abk", rounded(ct), rounded(w)), rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_allclose(dw, np.einsum("abk,abn->kn", rounded(x), rounded(ct)), rtol=1e-5,
                             atol=1e-4)
  # bfloat16 inputs get bfloat16 input gradients.
  assert jax.grad(lambda x: jnp.sum(k.bf16_dot_general(x, w, dims)))(
      x.astype(jnp.bfloat16)).dtype == jnp.bfloat16
  with pytest.raises(ValueError, match="Dense's product only"):
    k.bf16_dot_general(x, w, (((1,), (0,)), ((), ())))


def test_bf16_weight_gradient_matches_the_plain_product_at_any_row_count():
  for n in (7, 100, 128):  # padded by 25, 28 and 32 rows
    x = jax.random.normal(jax.random.key(n), (n, 48)).astype(jnp.bfloat16)
    ct = jax.random.normal(jax.random.key(n + 1), (n, 40)).astype(jnp.bfloat16)
    got = jax.jit(cpu.weight_gradient)(x, ct)
    assert got.shape == (48, 40) and got.dtype == jnp.float32
    np.testing.assert_allclose(got, plain.weight_gradient(x, ct), rtol=1e-5, atol=1e-5)
  # Under vmap, as in a sweep's replicas.
  xs = jax.random.normal(jax.random.key(0), (3, 100, 48)).astype(jnp.bfloat16)
  cts = jax.random.normal(jax.random.key(1), (3, 100, 40)).astype(jnp.bfloat16)
  np.testing.assert_allclose(jax.vmap(cpu.weight_gradient)(xs, cts),
                             jax.vmap(plain.weight_gradient)(xs, cts), rtol=1e-5, atol=1e-5)


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
    state = gan_jax.init_state(gan, jax.random.key(0), data[:2])
    z = jax.random.normal(jax.random.key(3), (16, 100))
    samples = gan_jax.generate(gan, state, z)
    chunk = jax.jit(functools.partial(loop_lib.run_chunk, gan, gan_jax.ArraySource(len(data)),
                                      num_steps=20, global_batch=50, kernels="cpu"))
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
      (nn.Conv(features, (4, 4), strides, conv_general_dilated=cpu.conv_general_dilated),
       nn.Conv(features, (4, 4), strides)),
      (cpu.conv_transpose(features, (4, 4), strides, dtype=jnp.float32),
       plain.conv_transpose(features, (4, 4), strides, dtype=jnp.float32))):
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
  conv = nn.Conv(features, (4, 4), strides, conv_general_dilated=cpu.conv_general_dilated)
  params = conv.init(jax.random.key(1), x)["params"]
  grad = jax.vmap(lambda x: jax.grad(lambda p: jnp.sum(conv.apply({"params": p}, x) ** 2))(
      params))(jnp.stack([x, 2 * x]))
  single = jax.grad(lambda p: jnp.sum(conv.apply({"params": p}, 2 * x) ** 2))(params)
  assert_trees_close(jax.tree.map(lambda a: a[1], grad), single, rtol=1e-4, atol=1e-3)


def _convolutions(hlo: str) -> list[tuple[int, ...]]:
  """The output dimensions of the convolutions in ``hlo``, sorted (layouts vary)."""
  shapes = [line.split("[", 1)[1].split("]")[0] for line in hlo.splitlines()
            if " convolution(" in line]
  return [tuple(sorted(int(n) for n in s.split(","))) for s in shapes]


@pytest.mark.parametrize("k,xla_kernel_gradient", [("plain", True), ("cpu", False)])
def test_the_conv_discriminator_s_kernel_gradient_is_xla_s_convolution_with_plain_kernels_only(
    k, xla_kernel_gradient):
  d = gan_jax.ConvDiscriminator(features=8, kernels=k)
  x = jax.random.uniform(jax.random.key(0), (4, 784))
  params = d.init(jax.random.key(1), x)["params"]
  grad = jax.jit(jax.grad(lambda p: jnp.sum(d.apply({"params": p}, x))))
  shapes = _convolutions(grad.lower(params).compile().as_text())
  kernel_shapes = {(1, 4, 4, 8), (4, 4, 8, 16)}  # conv_0's and conv_1's kernels
  assert shapes, "the check no longer sees the forward convolutions"
  assert bool(kernel_shapes & set(shapes)) == xla_kernel_gradient, shapes
