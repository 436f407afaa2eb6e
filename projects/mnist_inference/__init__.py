"""Learned approximate inference (the paper's section 7, item 2): an encoder E trained to
predict z from G(z) for a fixed, trained G, and G(E(x)) as reconstructions of real digits."""
