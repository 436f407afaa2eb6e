"""Proposition 1 and Theorem 1 on a 1-D Gaussian with an affine generator (Figure 1)."""
