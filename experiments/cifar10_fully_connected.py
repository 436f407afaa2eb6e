"""`python launch.py --config=experiments/cifar10_fully_connected.py`.

The config is projects/cifar10/configs/cifar10_fully_connected.py."""

from projects.cifar10.configs.cifar10_fully_connected import get_config  # noqa: F401
