"""The paper's CIFAR-10 runs (Figure 2 c and d): its fully connected and convolutional
players on contrast-normalised CIFAR-10, samples only (no number is measured)."""
