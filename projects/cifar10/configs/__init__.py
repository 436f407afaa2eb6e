"""Configs of the CIFAR-10 experiment:
`python launch.py --config=experiments/cifar10_fully_connected.py`."""
