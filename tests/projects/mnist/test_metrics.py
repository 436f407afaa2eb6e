"""Feature metrics against direct float64 computations and cases with known answers."""

import numpy as np
import pytest
import scipy.linalg

from projects.mnist.metrics import features as metrics


def test_frechet_distance_matches_the_formula_with_a_general_matrix_root():
  rng = np.random.RandomState(0)
  a = rng.randn(400, 6) @ rng.randn(6, 6)
  b = rng.randn(300, 6) @ rng.randn(6, 6) + 0.7
  sa, sb = metrics.gaussian_stats(a), metrics.gaussian_stats(b)
  root = scipy.linalg.sqrtm(sa[1] @ sb[1]).real
  want = np.sum((sa[0] - sb[0]) ** 2) + np.trace(sa[1] + sb[1] - 2 * root)
  assert metrics.frechet_distance(sa, sb) == pytest.approx(want, rel=1e-8)
  assert metrics.frechet_distance(sb, sa) == pytest.approx(want, rel=1e-8)
  assert metrics.frechet_distance(sa, sa) == pytest.approx(0, abs=1e-9)


def test_frechet_distance_of_diagonal_gaussians_in_closed_form():
  mu_a, mu_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
  var_a, var_b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
  want = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
  got = metrics.frechet_distance((mu_a, np.diag(var_a)), (mu_b, np.diag(var_b)))
  assert got == pytest.approx(want, rel=1e-12)


def test_classifier_score_ranges_from_one_to_the_number_of_classes():
  confident_balanced = np.eye(10)[np.arange(1000) % 10]
  assert metrics.classifier_score(confident_balanced) == pytest.approx(10, rel=1e-6)
  one_class = np.eye(10)[np.full(1000, 3)]
  assert metrics.classifier_score(one_class) == pytest.approx(1, rel=1e-6)
  unsure = np.full((1000, 10), 0.1)
  assert metrics.classifier_score(unsure) == pytest.approx(1, rel=1e-6)


def test_knn_radii_match_brute_force():
  rng = np.random.RandomState(1)
  x = rng.randn(257, 5).astype(np.float32)
  x[7] = x[3]  # a duplicate point: its nearest neighbour is at distance 0
  d = ((x[:, None].astype(np.float64) - x[None]) ** 2).sum(-1)
  for k in (1, 3, 5):
    want = np.sort(d, axis=1)[:, k]  # column 0 is the point itself
    got = metrics.knn_radii(x, k, batch=100)  # batches that do not divide the set
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match="need more than 5 points"):
    metrics.knn_radii(x[:5], 5)


def test_precision_recall_on_identical_disjoint_and_collapsed_sets():
  rng = np.random.RandomState(2)
  real = rng.randn(600, 4).astype(np.float32)
  assert metrics.precision_recall(real, real.copy()) == (1.0, 1.0)
  far = real + 100.0
  assert metrics.precision_recall(real, far) == (0.0, 0.0)
  # Samples that all sit near one real point: precise, but they recall little.
  collapsed = real[0] + 0.01 * rng.randn(600, 4).astype(np.float32)
  precision, recall = metrics.precision_recall(real, collapsed)
  assert precision == 1.0 and recall < 0.05


def test_class_coverage_flags_a_single_class_generator():
  balanced = np.eye(10)[np.arange(1000) % 10]
  cov = metrics.class_coverage(balanced)
  assert cov["classes_covered"] == 10 and cov["class_kl_to_uniform"] == pytest.approx(0, abs=1e-12)
  assert cov["class_histogram"] == [100] * 10
  single = np.eye(10)[np.full(1000, 7)]
  cov = metrics.class_coverage(single)
  assert cov["classes_covered"] == 1
  assert cov["class_kl_to_uniform"] == pytest.approx(np.log(10))
  # Nine classes and a trace of the tenth (below 1%): nine covered.
  nine = np.eye(10)[np.concatenate([np.arange(995) % 9, [9] * 5])]
  assert metrics.class_coverage(nine)["classes_covered"] == 9


def test_a_scorer_from_cached_reference_features_equals_one_that_featurizes_the_images():
  rng = np.random.RandomState(3)
  images, samples = rng.rand(300, 6), rng.rand(200, 6)

  def featurize(x):  # a fixed "classifier": features and softmax probabilities
    logits = np.stack([x[:, :3].sum(1), x[:, 3:].sum(1)], 1)
    return x * 2.0, np.exp(logits) / np.exp(logits).sum(1, keepdims=True)

  direct = metrics.FeatureScorer(featurize, images, k=3)
  cached = metrics.FeatureScorer(featurize, k=3, ref_features=direct.ref_features,
                                 ref_radii=direct.ref_radii)
  assert cached(samples) == direct(samples)
  with pytest.raises(ValueError, match="reference images or their features"):
    metrics.FeatureScorer(featurize, k=3)
