import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gan_jax
from gan_jax import players
from gan_jax.kernels import cpu, plain


@pytest.mark.parametrize("keep,width", [(0.5, 1), (0.75, 2), (0.25, 2), (0.8, 16), (0.9, 16)])
def test_mask_width_is_the_narrowest_exact_one(keep, width):
  assert plain.mask_bit_width(keep) == width


@pytest.mark.parametrize("keep", [0.5, 0.8, 0.3])
def test_bernoulli_mask_frequency_and_independence(keep):
  mask, realised = plain.bernoulli_mask(jax.random.key(0), keep, (1000, 500))
  assert abs(realised - keep) < 1e-5
  freq = float(jnp.mean(mask))
  sigma = (keep * (1 - keep) / mask.size) ** 0.5
  assert abs(freq - realised) < 5 * sigma
  # Neighbouring elements (which share a random word) are uncorrelated.
  m = np.asarray(mask, np.float64).reshape(-1)
  corr = np.corrcoef(m[:-1], m[1:])[0, 1]
  assert abs(corr) < 5 / m.size**0.5
  # Different keys give different masks.
  other, _ = plain.bernoulli_mask(jax.random.key(1), keep, (1000, 500))
  assert float(jnp.mean(mask != other)) > 0.1


@pytest.mark.parametrize("keep", [0.8, 0.3, 0.5, 0.75, 129 / 256, 0.9999999, 1.0])
@pytest.mark.parametrize("shape", [(7, 13), (100, 784), (3,)])
@pytest.mark.parametrize("kernels", [plain, cpu])
def test_bernoulli_mask_is_the_fields_of_its_words_low_bits_first(keep, shape, kernels):
  # The CPU kernels read whole-byte fields through a bitcast; the mask is the one the
  # shifts give (the streams of earlier runs), at sizes that leave part of a word over.
  width = plain.mask_bit_width(keep)
  threshold = int(round(keep * (1 << width)))
  size = int(np.prod(shape))
  words = np.asarray(jax.random.bits(jax.random.key(4), (-(-size * width // 32),), jnp.uint32))
  shifts = np.arange(0, 32, width, dtype=np.uint32)
  fields = (words[:, None] >> shifts) & np.uint32((1 << width) - 1)
  expected = fields.reshape(-1)[:size].reshape(shape) < threshold
  mask, realised = jax.jit(kernels.bernoulli_mask, static_argnums=(1, 2))(
      jax.random.key(4), keep, shape)
  np.testing.assert_array_equal(np.asarray(mask), expected)
  assert realised == threshold / (1 << width)


def test_dropout_is_unbiased_and_zeroes_elements():
  x = jnp.ones((2000, 300))
  y = players.dropout(x, 0.8, jax.random.key(3))
  assert abs(float(jnp.mean(y)) - 1.0) < 0.01
  _, realised = plain.bernoulli_mask(jax.random.key(3), 0.8, (1,))
  np.testing.assert_allclose(np.unique(np.asarray(y)), [0.0, 1 / realised], rtol=1e-6)
  assert players.dropout(x, 1.0, jax.random.key(3)) is x


def test_paper_players_shapes_ranges_and_init():
  g = gan_jax.MLPGenerator()
  d = gan_jax.MaxoutDiscriminator()
  z = jax.random.uniform(jax.random.key(0), (5, 100), minval=-3**0.5, maxval=3**0.5)
  gp = g.init(jax.random.key(1), z)["params"]
  dp = d.init(jax.random.key(2), jnp.zeros((1, 784)), train=False)["params"]
  assert gp["hidden_0"]["kernel"].shape == (100, 1200)
  assert gp["hidden_1"]["kernel"].shape == (1200, 1200)
  assert gp["output"]["kernel"].shape == (1200, 784)
  assert dp["hidden_0"]["kernel"].shape == (784, 240 * 5)
  assert dp["hidden_1"]["kernel"].shape == (240, 240 * 5)
  assert dp["output"]["kernel"].shape == (240, 1)
  for p, scale in [(gp, 0.05), (dp, 0.005)]:
    for layer in p.values():
      k = np.asarray(layer["kernel"])
      assert np.abs(k).max() <= scale and np.abs(k).max() > 0.9 * scale
      assert abs(k.mean()) < 0.05 * scale
  x = g.apply({"params": gp}, z)
  assert x.shape == (5, 784) and float(x.min()) > 0 and float(x.max()) < 1
  logits = d.apply({"params": dp}, x, train=True, rngs={"dropout": jax.random.key(4)})
  assert logits.shape == (5,) and logits.dtype == jnp.float32


def test_maxout_matches_a_direct_computation():
  d = gan_jax.MaxoutDiscriminator(hidden=(4,), pieces=3, input_keep=1.0, hidden_keep=1.0,
                                  init_scale=1.0)
  x = jax.random.normal(jax.random.key(0), (7, 5))
  p = d.init(jax.random.key(1), x, train=False)["params"]
  w, b = np.asarray(p["hidden_0"]["kernel"]), np.asarray(p["hidden_0"]["bias"])
  z = np.asarray(x) @ w + b  # [7, 12]
  h = np.stack([z[:, [piece * 4 + unit for piece in range(3)]].max(-1) for unit in range(4)], -1)
  expected = h @ np.asarray(p["output"]["kernel"])[:, 0] + np.asarray(p["output"]["bias"])[0]
  np.testing.assert_allclose(d.apply({"params": p}, x, train=True,
                                     rngs={"dropout": jax.random.key(2)}), expected, rtol=1e-5)


def _maxout_by_maximum(z, pieces, width):  # maxout as a fold of jnp.maximum
  h = z[..., :width]
  for p in range(1, pieces):
    h = jnp.maximum(h, z[..., p * width:(p + 1) * width])
  return h


@pytest.mark.parametrize("kernels", [plain, cpu])
def test_maxout_gradient_goes_to_the_max(kernels):
  z = jax.random.normal(jax.random.key(0), (6, 5 * 7))
  g = jax.random.normal(jax.random.key(1), (6, 7))
  loss = lambda f: lambda z: jnp.sum(f(z, 5, 7) * g)
  np.testing.assert_array_equal(kernels.maxout(z, 5, 7), _maxout_by_maximum(z, 5, 7))
  np.testing.assert_array_equal(jax.grad(loss(kernels.maxout))(z),
                                jax.grad(loss(_maxout_by_maximum))(z))
  # Under vmap (sweeps) and to second order (gradient penalties differentiate D's gradient).
  zs = jnp.stack([z, -z])
  np.testing.assert_array_equal(jax.vmap(jax.grad(loss(kernels.maxout)))(zs),
                                jax.vmap(jax.grad(loss(_maxout_by_maximum)))(zs))
  w = jax.random.normal(jax.random.key(2), (4, 5 * 7))
  penalty = lambda f: lambda w: jnp.sum(jax.grad(lambda x: jnp.sum(f(x @ w, 5, 7) ** 2))(
      jnp.ones((3, 4))) ** 2)
  np.testing.assert_allclose(jax.grad(penalty(kernels.maxout))(w),
                             jax.grad(penalty(_maxout_by_maximum))(w), rtol=1e-5)
  # Ties go to the first slab holding the max; a NaN in any slab propagates.
  tie = jnp.zeros((1, 3 * 2))
  np.testing.assert_array_equal(jax.grad(lambda z: jnp.sum(kernels.maxout(z, 3, 2)))(tie),
                                [[1, 1, 0, 0, 0, 0]])
  nan = jnp.zeros((1, 3 * 2)).at[0, 5].set(jnp.nan)
  assert np.isnan(kernels.maxout(nan, 3, 2)[0, 1]) and kernels.maxout(nan, 3, 2)[0, 0] == 0


def test_dropout_runs_only_in_training():
  d = gan_jax.MaxoutDiscriminator(hidden=(8,), pieces=2)
  x = jnp.ones((3, 6))
  p = d.init(jax.random.key(0), x, train=False)["params"]
  a = d.apply({"params": p}, x, train=False)
  b = d.apply({"params": p}, x, train=False)
  c = d.apply({"params": p}, x, train=True, rngs={"dropout": jax.random.key(1)})
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)


def test_marginal_output_bias_sets_initial_output_to_marginals():
  means = np.array([0.0, 0.13, 0.5, 0.9, 1.0])
  bias = players.marginal_output_bias(means)
  np.testing.assert_allclose(1 / (1 + np.exp(-bias.astype(np.float64))),
                             np.clip(means, 1e-7, 1 - 1e-7), rtol=1e-5)
  g = gan_jax.MLPGenerator(output_dim=5, hidden=(4,), init_scale=1e-6)
  spec = gan_jax.GAN(g, gan_jax.MaxoutDiscriminator(hidden=(3,), pieces=2), optax.sgd(0.1),
                     optax.sgd(0.1), latent_dim=2)
  state = gan_jax.init_state(spec, jax.random.key(0), jnp.zeros((1, 5)), g_output_bias=bias)
  out = spec.generator.apply({"params": state.g_params}, jnp.zeros((3, 2)))
  np.testing.assert_allclose(out[0], np.clip(means, 1e-7, 1 - 1e-7), atol=1e-4)
  with pytest.raises(ValueError, match="shape"):
    gan_jax.init_state(spec, jax.random.key(0), jnp.zeros((1, 5)), g_output_bias=bias[:3])


def test_minibatch_std_reads_each_group_of_examples_only():
  h = jax.random.normal(jax.random.key(0), (6, 5))
  expected = np.repeat(np.asarray(h).reshape(3, 2, 5).std(1).mean(-1), 2)[:, None]
  np.testing.assert_allclose(players.group_spread(h, 2), expected, rtol=1e-3)
  d = gan_jax.MaxoutDiscriminator(hidden=(8, 8), pieces=2, minibatch_std=2, input_keep=1.0,
                                  hidden_keep=1.0, init_scale=0.5)
  x = jax.random.normal(jax.random.key(1), (6, 5))
  p = d.init(jax.random.key(2), x, train=False)["params"]
  assert p["hidden_1"]["kernel"].shape == (9, 16)  # one more input: the group's spread
  out = d.apply({"params": p}, x, train=False)
  moved = d.apply({"params": p}, x.at[1].multiply(3.0), train=False)  # row 1: group 0
  assert not np.allclose(out[0], moved[0])  # its group partner sees the change
  np.testing.assert_array_equal(out[2:], moved[2:])  # the other groups do not
  with pytest.raises(ValueError, match="multiple of it"):
    d.apply({"params": p}, x[:5], train=False)


def test_batch_similarity_against_numpy():
  m = np.random.RandomState(0).randn(6, 3, 2).astype(np.float32)
  expected = np.array([[np.mean([np.exp(-np.abs(m[i, b] - m[j, b]).sum()) for j in range(6)
                                 if j != i]) for b in range(3)] for i in range(6)])
  np.testing.assert_allclose(players.batch_similarity(jnp.asarray(m)), expected, rtol=1e-5)
  crowd = np.concatenate([np.zeros((4, 3, 2)), m[4:]]).astype(np.float32)  # 4 alike rows
  got = np.asarray(players.batch_similarity(jnp.asarray(crowd)))
  assert np.all(got[:4] > got[4:].max())  # the crowd sees itself


def test_minibatch_features_make_each_output_read_the_whole_batch():
  d = gan_jax.MaxoutDiscriminator(hidden=(8, 8), pieces=2, minibatch_features=3,
                                  minibatch_dims=2, input_keep=1.0, hidden_keep=1.0,
                                  init_scale=0.5)
  x = jax.random.normal(jax.random.key(1), (5, 5))
  p = d.init(jax.random.key(2), x, train=False)["params"]
  assert p["hidden_1"]["kernel"].shape == (11, 16)  # three more inputs
  assert p["minibatch_projection"]["kernel"].shape == (8, 6)
  out = d.apply({"params": p}, x, train=False)
  moved = d.apply({"params": p}, x.at[4].multiply(3.0), train=False)
  assert not np.any(np.isclose(out[:4], moved[:4]))  # every other example sees the change
  alone = gan_jax.MaxoutDiscriminator(hidden=(8, 8), pieces=2, input_keep=1.0,
                                      hidden_keep=1.0, init_scale=0.5)
  assert alone.init(jax.random.key(2), x, train=False)["params"]["hidden_1"]["kernel"].shape \
      == (8, 16)


def test_a_packed_d_judges_consecutive_examples_together():
  d = gan_jax.MaxoutDiscriminator(hidden=(8,), pieces=2, pack=2, input_keep=1.0,
                                  hidden_keep=1.0, init_scale=0.5)
  x = jax.random.normal(jax.random.key(1), (6, 5))
  p = d.init(jax.random.key(2), x[:1], train=False)["params"]  # one row: a shape check
  assert p["hidden_0"]["kernel"].shape == (10, 16)  # two examples side by side
  out = d.apply({"params": p}, x, train=False)
  assert out.shape == (6,)
  np.testing.assert_array_equal(out[0::2], out[1::2])  # one logit per pack, for each example
  one = gan_jax.MaxoutDiscriminator(hidden=(8,), pieces=2, input_keep=1.0, hidden_keep=1.0)
  np.testing.assert_allclose(out[2], one.apply({"params": p}, x[2:4].reshape(1, 10),
                                               train=False)[0], rtol=1e-6)
  moved = d.apply({"params": p}, x.at[3].multiply(3.0), train=False)
  assert moved[2] != out[2] and np.array_equal(moved[:2], out[:2])
  with pytest.raises(ValueError, match="multiple of it"):
    d.apply({"params": p}, x[:5], train=False)


def test_a_d_with_features_out_gives_its_last_hidden_layer_beside_the_same_logit():
  d = gan_jax.MaxoutDiscriminator(hidden=(8, 6), pieces=2, init_scale=0.5, pack=2)
  x = jax.random.normal(jax.random.key(1), (6, 5))
  p = d.init(jax.random.key(2), x[:2], train=False)
  out, cols = d.clone(features_out=True).apply(p, x, train=False, mutable=["intermediates"])
  np.testing.assert_array_equal(out["logit"], d.apply(p, x, train=False))
  (sown,) = cols["intermediates"]["features"]  # one row per pack of 2
  assert out["features"].shape == (6, 6)
  np.testing.assert_array_equal(out["features"][0::2], sown)
  np.testing.assert_array_equal(out["features"][1::2], sown)
