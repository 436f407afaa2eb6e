"""Proposition 1 and Theorem 1's identity on a 1-D Gaussian toy."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

import gan_jax
from gan_jax import losses, toy

MEAN, STD = 2.0, 0.5  # p_data = N(2, 0.5^2)


def sample_data(key, n):
  return MEAN + STD * jax.random.normal(key, (n, 1))


def test_trained_discriminator_matches_d_star_and_v_matches_jsd(xla_optimized):
  gan = gan_jax.GAN(
      generator=gan_jax.MLPGenerator(output_dim=1, hidden=(), output_activation="linear"),
      discriminator=gan_jax.MaxoutDiscriminator(hidden=(32, 32), pieces=4, init_scale=0.5,
                                                input_keep=1.0, hidden_keep=1.0),
      g_optimizer=optax.sgd(0.0),
      d_optimizer=optax.adam(optax.exponential_decay(3e-3, 3000, 0.05)),
      latent_dim=1, latent_dist="normal")
  state = gan_jax.init_state(gan, jax.random.key(0), jnp.zeros((1, 1)))
  state = state.replace(g_params=toy.affine_generator_params(1.0, 0.0))  # p_g = N(0, 1)
  before = state.g_params
  state, d_losses = toy.train_discriminator(gan, state, sample_data, jax.random.key(1),
                                            num_steps=3000, batch_size=1024)
  assert float(d_losses[-100:].mean()) < float(d_losses[:100].mean())
  np.testing.assert_array_equal(state.g_params["output"]["kernel"], before["output"]["kernel"])

  x = np.linspace(-6.0, 8.0, 14001)
  dx = x[1] - x[0]
  p_data = toy.gaussian_pdf(x, MEAN, STD)
  p_g = toy.affine_generator_density(state.g_params, x)
  np.testing.assert_allclose(p_g, toy.gaussian_pdf(x, 0.0, 1.0))
  d = toy.discriminator_on_grid(gan, state.d_params, x)
  d_star = np.asarray(losses.optimal_discriminator(jnp.asarray(p_data), jnp.asarray(p_g)))
  support = (p_data + p_g) > 0.05
  assert np.abs(d - d_star)[support].max() <= 0.05  # Proposition 1
  v = toy.value_on_grid(p_data, p_g, d, dx)
  c = losses.optimal_value(p_data, p_g, dx)  # -log 4 + 2 JSD
  assert abs(v - c) <= 0.02
  assert c > -np.log(4) + 0.1  # p_g != p_data: above the global minimum


def test_affine_generator_density_matches_its_samples():
  g = gan_jax.MLPGenerator(output_dim=1, hidden=(), output_activation="linear")
  params = toy.affine_generator_params(-1.5, 0.7)
  z = jax.random.normal(jax.random.key(0), (200_000, 1))
  x = np.asarray(g.apply({"params": params}, z))[:, 0]
  assert abs(x.mean() - 0.7) < 0.02 and abs(x.std() - 1.5) < 0.02
  grid = np.linspace(-5, 5, 11)
  np.testing.assert_allclose(toy.affine_generator_density(params, grid),
                             toy.gaussian_pdf(grid, 0.7, 1.5))
