"""The import-linter contracts of pyproject.toml: layers import only downwards, no cycles.

``make lint`` runs ``lint-imports`` too; running it here makes ``make test`` fail on a new
upward import or cycle. The contract itself is checked against DESIGN.md's order, and shown to
catch an upward import in a throwaway package laid out like dltricks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: DESIGN.md: nn <- models <- data <- train <- methods <- compress/search/analysis <- lab
#: <- compare <- cli; coverage between compare and cli; utils and registry at the bottom
ORDER = ["cli", "coverage", "compare", "lab", "compress : search : analysis", "methods",
         "train", "data", "models", "nn", "utils", "registry"]


def _lint_imports() -> str:
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        found = shutil.which("lint-imports")
        if found is None:
            pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
        exe = Path(found)
    return str(exe)


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def _run(cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_lint_imports(), "--no-cache", "--no-logo"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_contract_encodes_the_design_order():
    config = _config()
    assert config["root_package"] == "dltricks"
    contracts = {c["id"]: c for c in config["contracts"]}
    assert contracts["layers"]["type"] == "layers"
    assert contracts["layers"]["layers"] == ORDER
    assert contracts["acyclic"]["type"] == "acyclic_siblings"
    assert contracts["acyclic"]["ancestors"] == ["dltricks"]
    assert not any(c.get("ignore_imports") for c in contracts.values())  # no silenced import


def test_dltricks_keeps_its_import_contracts():
    proc = _run(ROOT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def _fake_project(tmp_path: Path, imports: dict[str, str]) -> Path:
    """A package ``fakepkg`` with one module per layer and the given import lines."""
    pkg = tmp_path / "fakepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for layer in ("cli", "coverage", "compare", "lab", "compress", "search", "analysis", "methods",
                  "train", "data", "models", "nn", "utils", "registry"):
        sub = pkg / layer
        sub.mkdir()
        (sub / "__init__.py").write_text(imports.get(layer, ""))
    text = (ROOT / "pyproject.toml").read_text()
    section = text[text.index("[tool.importlinter]"):]
    (tmp_path / "pyproject.toml").write_text(section.replace('"dltricks"', '"fakepkg"'))
    return tmp_path


@pytest.mark.parametrize(("imports", "kept"), [
    ({"cli": "import fakepkg.lab\n", "lab": "import fakepkg.nn\n",
      "nn": "import fakepkg.utils\n", "utils": "import fakepkg.registry\n"}, True),
    ({"nn": "import fakepkg.models\n"}, False),             # upward import
    ({"lab": "import fakepkg.compare\n"}, False),           # the cycle issue 16 removed
    ({"compress": "import fakepkg.analysis\n"}, True),      # one layer: siblings may share
    ({"compress": "import fakepkg.analysis\n",
      "analysis": "import fakepkg.compress\n"}, False),    # ... but never in a cycle
    ({"analysis": "import fakepkg.lab\n"}, False),
    ({"utils": "import fakepkg.nn\n"}, False),              # utils is below nn
])
def test_the_contract_catches_upward_imports(tmp_path, imports, kept):
    project = _fake_project(tmp_path, imports)
    env = {**os.environ, "PYTHONPATH": str(project)}
    proc = _run(project, env)
    assert (proc.returncode == 0) is kept, proc.stdout[-3000:] + proc.stderr[-1000:]
