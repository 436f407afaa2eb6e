import math

import numpy as np
import pytest
from scipy.special import logsumexp

from projects.mnist.metrics import parzen


def direct(samples, points, sigma):
  """float64 NumPy: the formula as written, distances by subtraction."""
  samples, points = np.asarray(samples, np.float64), np.asarray(points, np.float64)
  sq = ((points[:, None, :] - samples[None, :, :]) ** 2).sum(-1)
  d = points.shape[1]
  return (logsumexp(-sq / (2 * sigma**2), axis=1) - math.log(len(samples))
          - d * math.log(sigma * math.sqrt(2 * math.pi)))


def test_matches_float64_numpy_on_small_sizes():
  rs = np.random.RandomState(0)
  samples = rs.rand(300, 50).astype(np.float32)
  points = rs.rand(130, 50).astype(np.float32)
  sigmas = (0.1, 0.2154, 0.5, 1.0)
  got = parzen.parzen_log_density(samples, points, sigmas, batch_size=64)
  assert got.shape == (4, 130)
  for i, s in enumerate(sigmas):
    np.testing.assert_allclose(got[i], direct(samples, points, s), rtol=1e-4, atol=2e-3)


def test_kernels_centred_on_the_points_themselves():
  """Far-apart points, each with its own kernel: log p = -log K - d log(sigma sqrt(2 pi))."""
  d, k, sigma = 16, 40, 0.1
  points = np.repeat(np.arange(k, dtype=np.float32)[:, None] * 3.0, d, axis=1)  # 12 apart
  got = parzen.parzen_log_density(points, points, sigma)
  expected = -math.log(k) - d * math.log(sigma * math.sqrt(2 * math.pi))
  np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_protocol_picks_the_best_sigma_and_reports_stderr():
  rs = np.random.RandomState(1)
  centre = rs.rand(1, 20)
  samples = centre + 0.3 * rs.randn(2000, 20)
  valid = centre + 0.3 * rs.randn(200, 20)
  test = centre + 0.3 * rs.randn(500, 20)
  res = parzen.parzen_evaluate(samples, valid, test)
  assert res.sigma == max(res.validation_means, key=res.validation_means.get)
  assert len(res.validation_means) == 10 and res.sigma in parzen.PAPER_SIGMAS
  ll = direct(samples, test, res.sigma)
  assert res.mean == pytest.approx(ll.mean(), abs=2e-3)
  assert res.stderr == pytest.approx(ll.std() / math.sqrt(500), rel=1e-3)
  # A better generator (the true distribution) scores higher than a worse one.
  worse = parzen.parzen_evaluate(centre + 0.9 * rs.randn(2000, 20), valid, test)
  assert res.mean > worse.mean


def test_paper_sigma_grid():
  np.testing.assert_allclose(parzen.PAPER_SIGMAS, np.logspace(-1, 0, 10))


def test_a_nan_sample_or_point_gives_nan_never_a_perfect_match():
  from projects.mnist.metrics import parzen  # pylint: disable=import-outside-toplevel
  rs = np.random.RandomState(0)
  samples, points = rs.rand(20, 8).astype(np.float32), rs.rand(5, 8).astype(np.float32)
  samples[3] = np.nan
  assert np.isnan(parzen.parzen_log_density(samples, points, 0.2)).all()
  clean = rs.rand(20, 8).astype(np.float32)
  points[1] = np.nan
  got = parzen.parzen_log_density(clean, points, 0.2)
  assert np.isnan(got[1]) and np.isfinite(np.delete(got, 1)).all()
