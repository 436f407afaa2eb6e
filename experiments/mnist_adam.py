"""`python launch.py --config=experiments/mnist_adam.py`.

The config is projects/mnist/configs/mnist_adam.py."""

from projects.mnist.configs.mnist_adam import get_config  # noqa: F401
