"""Measures of a generator: the paper's Parzen-window log-likelihood, and more."""

from projects.mnist.metrics.parzen import ParzenResult, parzen_evaluate, parzen_log_density

__all__ = ["ParzenResult", "parzen_evaluate", "parzen_log_density"]
