"""`python launch.py --config=experiments/mnist.py`.

The config is projects/mnist/configs/mnist.py."""

from projects.mnist.configs.mnist import get_config  # noqa: F401
