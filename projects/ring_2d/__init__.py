"""Mode coverage on a ring of Gaussians; the minimax G loss's early saturation."""
