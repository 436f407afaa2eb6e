"""Measures of a generator: the paper's Parzen-window log-likelihood, and more."""

from gan_jax.evaluation.parzen import ParzenResult, parzen_evaluate, parzen_log_density

__all__ = ["ParzenResult", "parzen_evaluate", "parzen_log_density"]
