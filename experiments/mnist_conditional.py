"""`python launch.py --config=experiments/mnist_conditional.py`.

The config is projects/mnist_conditional/configs/mnist_conditional.py."""

from projects.mnist_conditional.configs.mnist_conditional import get_config  # noqa: F401
