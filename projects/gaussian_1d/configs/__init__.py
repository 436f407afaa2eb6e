"""Configs of the 1-D Gaussian experiment."""
