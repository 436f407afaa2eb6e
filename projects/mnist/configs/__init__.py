"""Configs of the MNIST experiment: `python launch.py --config=projects/mnist/configs/mnist.py`."""
