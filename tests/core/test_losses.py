import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import losses


def log_sig(x):  # float64 reference, valid for moderate x
  return -math.log1p(math.exp(-x))


REAL = [2.0, -1.0, 0.3]
FAKE = [0.5, -3.0, 1.5]


def test_discriminator_loss_matches_hand_computation():
  bce_real = [-log_sig(x) for x in REAL]  # label 1
  bce_fake = [-log_sig(-x) for x in FAKE]  # label 0
  expected = 0.5 * (np.mean(bce_real) + np.mean(bce_fake))
  got = losses.discriminator_loss(jnp.array(REAL), jnp.array(FAKE))
  np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_label_smoothing_uses_soft_real_target():
  s = 0.9
  bce_real = [-(s * log_sig(x) + (1 - s) * log_sig(-x)) for x in REAL]
  bce_fake = [-log_sig(-x) for x in FAKE]
  expected = 0.5 * (np.mean(bce_real) + np.mean(bce_fake))
  got = losses.discriminator_loss(jnp.array(REAL), jnp.array(FAKE), real_label=s)
  np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_generator_losses_match_hand_computation():
  minimax = np.mean([log_sig(-x) for x in FAKE])  # mean log(1 - D(G(z)))
  non_sat = -np.mean([log_sig(x) for x in FAKE])  # -mean log D(G(z))
  np.testing.assert_allclose(losses.generator_loss(jnp.array(FAKE), kind="minimax"), minimax,
                             rtol=1e-6)
  np.testing.assert_allclose(losses.generator_loss(jnp.array(FAKE), kind="non_saturating"),
                             non_sat, rtol=1e-6)


def test_value_function_is_eq1_and_minus_twice_d_loss():
  expected = np.mean([log_sig(x) for x in REAL]) + np.mean([log_sig(-x) for x in FAKE])
  v = losses.value_function(jnp.array(REAL), jnp.array(FAKE))
  np.testing.assert_allclose(v, expected, rtol=1e-6)
  np.testing.assert_allclose(-2 * losses.discriminator_loss(jnp.array(REAL), jnp.array(FAKE)),
                             v, rtol=1e-6)
  # D = 1/2 everywhere (logit 0): V = -log 4.
  np.testing.assert_allclose(losses.value_function(jnp.zeros(4), jnp.zeros(4)), -math.log(4),
                             rtol=1e-6)


@pytest.mark.parametrize("real,fake,expected", [
    (1e4, -1e4, 0.0),  # D perfectly right: zero loss
    (-1e4, 1e4, 1e4),  # D perfectly wrong: 0.5 * (1e4 + 1e4)
])
def test_extreme_logits_are_finite(real, fake, expected):
  r, f = jnp.array([real]), jnp.array([fake])
  d = losses.discriminator_loss(r, f)
  np.testing.assert_allclose(d, expected, atol=1e-3)
  grads = jax.grad(lambda a, b: losses.discriminator_loss(a, b), argnums=(0, 1))(r, f)
  assert all(np.isfinite(np.asarray(g)).all() for g in grads)
  for kind in losses.G_LOSS_KINDS:
    value, grad = jax.value_and_grad(
        lambda x, kind=kind: losses.generator_loss(x, kind=kind, real_out=r))(f)
    assert np.isfinite(value) and np.isfinite(np.asarray(grad)).all()
  v = losses.value_function(r, f)
  assert np.isfinite(v)


def test_minimax_saturates_and_non_saturating_does_not():
  """A confidently rejected sample (logit -10): d loss / d logit ~ 0 vs ~ -1."""
  logit = jnp.array([-10.0])
  g_minimax = jax.grad(lambda x: losses.generator_loss(x, kind="minimax"))(logit)[0]
  g_nonsat = jax.grad(lambda x: losses.generator_loss(x, kind="non_saturating"))(logit)[0]
  assert abs(g_minimax) < 1e-4  # -sigmoid(-10) = -4.5e-5
  np.testing.assert_allclose(g_minimax, -1 / (1 + math.exp(10)), rtol=1e-4)
  np.testing.assert_allclose(g_nonsat, -1 / (1 + math.exp(-10)), rtol=1e-6)  # ~ -0.99995


def test_unknown_generator_loss_kind_is_rejected():
  with pytest.raises(ValueError, match="minimax"):
    losses.generator_loss(jnp.zeros(2), kind="earth_mover")


def test_optimal_discriminator_and_theorem_1_identity():
  x = np.linspace(-10, 10, 20001)
  dx = x[1] - x[0]
  gauss = lambda mu, s: np.exp(-0.5 * ((x - mu) / s) ** 2) / (s * math.sqrt(2 * math.pi))
  p, q = gauss(0.0, 1.0), gauss(1.0, 1.5)
  d_star = np.asarray(losses.optimal_discriminator(jnp.asarray(p), jnp.asarray(q)))
  np.testing.assert_allclose(d_star, p / (p + q), rtol=1e-5)
  # V(D*, G) computed directly equals -log 4 + 2 JSD.
  mask = (p > 1e-300) & (q > 1e-300)
  v_direct = np.sum(p[mask] * np.log(d_star[mask]) + q[mask] * np.log(1 - d_star[mask])) * dx
  np.testing.assert_allclose(losses.optimal_value(p, q, dx), v_direct, atol=1e-4)
  # Theorem 1: the minimum -log 4 exactly when p_g = p_data.
  np.testing.assert_allclose(losses.optimal_value(p, p, dx), -math.log(4), atol=1e-9)
  assert losses.optimal_value(p, q, dx) > -math.log(4) + 0.01


def test_feature_matching_is_the_base_loss_plus_the_weighted_gap_of_mean_features():
  rng = np.random.default_rng(0)
  real, fake = ({"logit": jnp.asarray(rng.normal(size=5)),
                 "features": jnp.asarray(rng.normal(size=(5, 3)))} for _ in range(2))
  fm = losses.WithFeatureMatching(losses.g_non_saturating, 2.0)
  assert losses.takes_real(fm)
  gap = np.asarray(fake["features"]).mean(0) - np.asarray(real["features"]).mean(0)
  np.testing.assert_allclose(fm(fake, real_out=real),
                             losses.g_non_saturating(fake["logit"]) + 2.0 * np.sum(gap ** 2),
                             rtol=1e-6)
  same = {"logit": fake["logit"], "features": real["features"]}
  np.testing.assert_allclose(fm(same, real_out=real), losses.g_non_saturating(fake["logit"]))
  relativistic = losses.WithFeatureMatching(losses.g_relativistic, 0.0)
  np.testing.assert_allclose(relativistic(fake, real_out=real),
                             losses.g_relativistic(fake["logit"], real_out=real["logit"]))
  on_logit = losses.OnLogit(losses.discriminator_loss)
  np.testing.assert_allclose(on_logit(real, fake, real_label=1.0), losses.discriminator_loss(
      real["logit"], fake["logit"], real_label=1.0))
  with pytest.raises(ValueError, match="features_out=True"):
    fm(fake["logit"], real_out=real["logit"])
  with pytest.raises(ValueError, match=">= 0"):
    losses.WithFeatureMatching(losses.g_non_saturating, -1.0)
