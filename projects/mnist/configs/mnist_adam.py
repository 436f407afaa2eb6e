"""MNIST with Algorithm 1 as written (alternating k D steps, then a G step) and Adam.

Command:
  python launch.py --config=experiments/mnist_adam.py --workdir=runs/mnist_adam
  python launch.py --config=experiments/mnist_adam.py:smoke    # 38 s on a fresh machine
  python launch.py --config=experiments/mnist_adam.py --config.gan.k=2   # k D steps per G step
Same players, data and noise as experiments/mnist.py; both players use Adam
(lr 2e-4, b1 0.5, b2 0.999); G's step draws fresh noise, as Algorithm 1 does.

Run time on a 2-core CPU: about 20 it/s. 20 epochs (--config.num_train_steps=10000)
took 12 min 36 s, with other jobs sharing the cores. Result: digits, though less
varied than experiments/mnist.py gives (docs/mnist_adam_samples_20_epochs.png);
Parzen log-likelihood -9.5 +- 2.3 nats. The default 70 epochs take about 30
minutes. Smoke: 38 s on a fresh 2-core machine (Parzen only unless the feature
classifier is cached).
"""

from projects.mnist.configs import mnist


def get_config(arg=None):
  config = mnist.get_config(arg)
  if not arg:
    config.num_train_steps = 35_000  # 70 epochs
  config.optimizer = config.optimizer.__class__(dict(
      name="adam", learning_rate=2e-4, b1=0.5, b2=0.999))
  config.gan.update_rule = "alternating"
  config.gan.k = 1
  return config
