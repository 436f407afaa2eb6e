"""The paper's MNIST experiment: TFDS data, the MLP/maxout players, the Parzen protocol and
the classifier metrics, model selection on validation, Figures 2 and 3."""
