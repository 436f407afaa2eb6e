"""The driver: one training loop for every experiment, with its guarantees.

``train.train_and_evaluate(config, workdir, experiment)`` trains one run,
``train.train_sweep`` the replicas of ``config.sweep``; an ``experiment.Experiment``
subclass supplies what is its own (data, players, evaluation). Around the loop:
config schema, verified checkpoints and exact resume, the model selected on
validation, sweeps as vmapped groups, the workdir lock, stop signals, divergence,
multi-process start-up, metrics and pictures.
"""
