"""Test setup: four fake CPU devices (set before JAX is imported) and tiny GANs."""

import contextlib
import os
import pathlib

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=4").strip()
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import jax  # noqa: E402

# Tests compile many small programs; XLA's optimisations cost more time than they save.
jax.config.update("jax_disable_most_optimizations", True)
import numpy as np  # noqa: E402
import optax  # noqa: E402
import pytest  # noqa: E402

import gan_jax  # noqa: E402

FEATURES, LATENT = 12, 3


def tiny_gan(*, keep: float = 1.0, update_rule: str = "alternating", k: int = 1,
             g_loss: str = "non_saturating", lr: float = 0.05, **kw) -> gan_jax.GAN:
  """A small MLP/maxout GAN on FEATURES-dim data; ``keep`` sets all dropout keep rates."""
  return gan_jax.GAN(
      generator=gan_jax.MLPGenerator(output_dim=FEATURES, hidden=(16,), init_scale=0.5),
      discriminator=gan_jax.MaxoutDiscriminator(hidden=(8, 6), pieces=3, init_scale=0.5,
                                                input_keep=keep, hidden_keep=keep),
      g_optimizer=optax.sgd(lr, momentum=0.5),
      d_optimizer=optax.adam(lr),
      latent_dim=LATENT, update_rule=update_rule, k=k, g_loss=g_loss, **kw)


def tiny_state() -> gan_jax.GANState:
  """``tiny_gan``'s initial state as host arrays (for checkpoint tests)."""
  return jax.device_get(gan_jax.init_state(tiny_gan(), jax.random.key(0),
                                           np.zeros((1, FEATURES), np.uint8)))


def at_step(state, step):
  """``state`` at ``step``, with G's parameters moved by ``step`` so that steps differ."""
  return state.replace(step=np.asarray(step, np.asarray(state.step).dtype),
                       g=state.g.replace(params=jax.tree.map(lambda p: p + step, state.g_params)))


@pytest.fixture
def data():
  return np.random.RandomState(0).randint(0, 256, (240, FEATURES)).astype(np.uint8)


def assert_trees_close(a, b, **tol):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tol)


def assert_trees_equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


ROOT = pathlib.Path(__file__).resolve().parent.parent  # the repository
MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"  # where TFDS fetches them


def find_mnist() -> str | None:
  """A folder with the four original MNIST files: $GAN_JAX_MNIST_DIR, else ../shared/data/mnist
  beside the repository, else a copy downloaded (when the network allows) into the user's
  cache. TFDS verifies the files' checksums when it prepares the data set from them."""
  for folder in (os.environ.get("GAN_JAX_MNIST_DIR"),
                 os.path.join(os.path.dirname(ROOT), "shared", "data", "mnist")):
    if folder and all(os.path.isfile(os.path.join(folder, f)) for f in MNIST_FILES):
      return folder
  cache = os.path.join(os.path.expanduser("~"), ".cache", "gan_jax", "mnist_files")
  import urllib.request  # pylint: disable=import-outside-toplevel
  try:
    os.makedirs(cache, exist_ok=True)
    for name in MNIST_FILES:
      path = os.path.join(cache, name)
      if not os.path.isfile(path):
        with urllib.request.urlopen(MNIST_URL + name, timeout=10) as r:
          body = r.read()
        with open(path + ".part", "wb") as f:
          f.write(body)
        os.replace(path + ".part", path)
  except OSError:
    return None
  return cache


MNIST_DIR = find_mnist()
NO_MNIST = ("the MNIST files were not found: set GAN_JAX_MNIST_DIR to a folder holding "
            f"{', '.join(MNIST_FILES)}, put them in ../shared/data/mnist, or allow the "
            f"download from {MNIST_URL}")
needs_mnist = pytest.mark.skipif(MNIST_DIR is None, reason=NO_MNIST)


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
  """Every program the run compiles goes through one persistent compilation cache, shared by
  pytest-xdist's workers and the programs tests start (launch.py): the suite compiles the
  same small programs again and again (a third of tests/core's time without it). Set before
  any test compiles; the folder lives in pytest's own temporary root, which it rotates."""
  factory = getattr(config, "_tmp_path_factory", None)
  if factory is None:
    return
  base = factory.getbasetemp()
  root = base.parent if hasattr(config, "workerinput") else base  # above gw0, gw1, ...
  cache = root / "jax_cache"
  cache.mkdir(exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", str(cache))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = str(cache)  # for the programs tests start
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"


def pytest_terminal_summary(terminalreporter):
  """One line saying how many tests did not run for want of the MNIST files."""
  skipped = [r for r in terminalreporter.stats.get("skipped", []) if NO_MNIST in str(r.longrepr)]
  if skipped:
    terminalreporter.write_line(f"{len(skipped)} tests skipped: {NO_MNIST}.", yellow=True)


def _shared_dir(tmp_path_factory, request, name: str) -> str:
  """A directory for the whole test run: per session, or shared by pytest-xdist's workers."""
  if not hasattr(request.config, "workerinput"):  # not an xdist worker
    return str(tmp_path_factory.mktemp(name))
  path = tmp_path_factory.getbasetemp().parent / name  # the run's root, above gw0, gw1, ...
  path.mkdir(exist_ok=True)
  return str(path)


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory, request):
  """One TFDS data_dir for the test run: MNIST is prepared from MNIST_DIR once."""
  return _shared_dir(tmp_path_factory, request, "tfds")


@pytest.fixture(scope="session")
def mnist(tfds_dir):
  if MNIST_DIR is None:
    pytest.skip(NO_MNIST)
  import filelock  # pylint: disable=import-outside-toplevel

  from projects.mnist import data  # pylint: disable=import-outside-toplevel
  with filelock.FileLock(os.path.join(tfds_dir, ".prepare.lock")):  # one worker prepares
    return data.load_mnist(manual_dir=MNIST_DIR, data_dir=tfds_dir)


@pytest.fixture(scope="session")
def mnist_classifier(mnist, tmp_path_factory):
  """(classifier, cache_dir): the real feature classifier, trained once for the session.

  Compiled with XLA's optimisations on (as in real use): unoptimised convolutions
  would make its training several times slower.
  """
  from projects.mnist.metrics import classifier  # pylint: disable=import-outside-toplevel
  cache = str(tmp_path_factory.mktemp("classifier_cache"))
  with optimized():
    clf = classifier.load_or_train(mnist, cache_dir=cache, verbose=False)
  return clf, cache


@contextlib.contextmanager
def optimized():
  """XLA's optimisations on, for long-running programs where they save more than they cost."""
  jax.config.update("jax_disable_most_optimizations", False)
  try:
    yield
  finally:
    jax.config.update("jax_disable_most_optimizations", True)


@pytest.fixture
def xla_optimized():
  with optimized():
    yield


@pytest.fixture(scope="session")
def mnist_smoke_run(mnist, tfds_dir, tmp_path_factory, request):
  """The workdir of a 50-iteration run of experiments/mnist.py:smoke (no evaluation): a
  trained run for the analyses that read one (inference, probes). One run for the whole
  test session: the first pytest-xdist worker to ask trains it, the others wait for it."""
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel

  import filelock  # pylint: disable=import-outside-toplevel
  del mnist  # prepared first, by the fixture
  root = _shared_dir(tmp_path_factory, request, "mnist_smoke_run")
  workdir, done = os.path.join(root, "run"), os.path.join(root, "trained")
  with filelock.FileLock(os.path.join(root, ".lock")):
    if not os.path.exists(done):
      out = subprocess.run(
          [sys.executable, "launch.py", "--config=experiments/mnist.py:smoke",
           f"--workdir={workdir}", f"--config.data.manual_dir={MNIST_DIR}",
           f"--config.data.data_dir={tfds_dir}", "--config.num_train_steps=50",
           "--config.eval_every=50", "--config.checkpoint_every=50",
           "--config.evaluation.parzen=False", "--config.evaluation.classifier_metrics=False"],
          cwd=ROOT, capture_output=True, text=True, timeout=600)
      assert out.returncode == 0, out.stderr[-3000:]
      open(done, "w").close()
  return workdir
