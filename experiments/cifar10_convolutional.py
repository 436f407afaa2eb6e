"""`python launch.py --config=experiments/cifar10_convolutional.py`.

The config is projects/cifar10/configs/cifar10_convolutional.py."""

from projects.cifar10.configs.cifar10_convolutional import get_config  # noqa: F401
