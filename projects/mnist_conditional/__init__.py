"""A conditional GAN on MNIST, p(x | digit) (the paper's section 7, item 1; Mirza & Osindero
2014's MLP players)."""
