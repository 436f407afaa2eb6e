"""`python launch.py --config=experiments/mnist_fast.py`.

The config is projects/mnist/configs/mnist_fast.py."""

from projects.mnist.configs.mnist_fast import get_config  # noqa: F401
