"""The README's code examples run verbatim and do what they say."""

import pathlib
import re

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def python_block_after(heading: str) -> str:
  text = README.read_text()
  section = text[text.index(heading):]
  return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_use_the_steps_in_your_own_jax_code_example():
  namespace = {}
  exec(compile(python_block_after("## Use the steps in your own JAX code"), "README", "exec"),
       namespace)
  samples = np.asarray(namespace["samples"])
  metrics, state = namespace["metrics"], namespace["state"]
  assert samples.shape == (1000, 2) and np.isfinite(samples).all()
  assert metrics["d_loss"].shape == (2000,) and np.isfinite(metrics["d_loss"]).all()
  # The generator has moved its mass onto the data (from ~0 at initialisation) without
  # collapsing to a point.
  np.testing.assert_allclose(samples.mean(0), [2.0, -1.0], atol=0.5)
  assert (0.05 < samples.std(0)).all() and (samples.std(0) < 1.5).all()
  # BatchNorm's running statistics were trained and the R1 penalty was applied.
  stats = state.g.collections["batch_stats"]["BatchNorm_0"]
  assert np.abs(np.asarray(stats["mean"])).max() > 1e-3
  assert float(metrics["d_reg"].mean()) > 0
  # The samples came from the EMA, which differs from the raw generator.
  raw = np.asarray(namespace["gan_jax"].generate(namespace["gan"], state, namespace["z"],
                                                 ema=False))
  assert not np.allclose(raw, samples)


def test_every_test_the_fault_table_cites_exists():
  text = (ROOT / "docs" / "reliability.md").read_text()
  table = text[text.index("| fault | what gan_jax does | test |"):]
  table = table[:table.index("\n\n")]
  cited = set(re.findall(r"`(test_\w+\.py)::(test_\w+)`", table))
  assert len(cited) >= 15
  for module, name in cited:
    (path,) = (ROOT / "tests").rglob(module)
    assert f"def {name}(" in path.read_text(), f"{module}::{name}"


def test_links_stay_in_the_repository_and_resolve():
  """Every relative link and image of the README, docs/ and benchmarks/README.md names a
  file in the repository, and none leaves it."""
  pages = [README, ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
  checked = 0
  for page in pages:
    text = page.read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r'<img src="([^"]+)"', text)
    for target in targets:
      assert "://" not in target, f"{page.name} links outside the repository: {target}"
      path = (page.parent / target.split("#")[0]).resolve()
      assert path.is_file() and ROOT in path.parents, f"{page.name}: {target} is not a file here"
      checked += 1
  assert checked >= 20


def test_readme_is_short():
  assert len(README.read_text().splitlines()) <= 250
