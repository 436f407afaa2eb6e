"""The library stands apart from the experiments: importable alone, small pieces."""

import ast
import json
import subprocess
import sys

from conftest import ROOT

FORBIDDEN = ("tensorflow", "tensorflow_datasets", "matplotlib", "projects")


def test_import_gan_jax_loads_no_data_pipeline_plotting_or_project():
  code = ("import json, sys, gan_jax, gan_jax.kernels; "
          "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
  out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       check=True, timeout=120)
  loaded = set(json.loads(out.stdout))
  assert "gan_jax" in loaded and "jax" in loaded
  assert not loaded & set(FORBIDDEN), loaded & set(FORBIDDEN)


def test_no_library_module_imports_a_project():
  for path in (ROOT / "gan_jax").rglob("*.py"):
    for node in ast.walk(ast.parse(path.read_text())):
      names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
               [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
      assert not any(n.split(".")[0] == "projects" for n in names), path


def test_library_functions_and_classes_stay_small():
  too_long = []
  for path in (ROOT / "gan_jax").rglob("*.py"):
    for node in ast.walk(ast.parse(path.read_text())):
      limit = (60 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else
               200 if isinstance(node, ast.ClassDef) else None)
      if limit and node.end_lineno - node.lineno + 1 > limit:
        too_long.append(f"{path.relative_to(ROOT)}:{node.name}")
  assert not too_long
  assert len((ROOT / "gan_jax" / "run" / "train.py").read_text().splitlines()) <= 400
