"""The architecture contracts in pyproject.toml (import-linter, run by make check) hold on the tree and
catch a deliberate violation in a copy of it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ops

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("schemas", "runtime", "services", "audit")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def copy_of_the_tree(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    # Only the copy is importable: the editable install of the real tree must not answer for it.
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONSAFEPATH": "1"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, timeout=120
    )


def violate(tree: Path, module: str, line: str) -> None:
    path = tree / Path(*module.split(".")).with_suffix(".py")
    path.write_text(path.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")


def test_the_tree_keeps_its_contracts(tmp_path: Path) -> None:
    done = lint_imports(copy_of_the_tree(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("services.intake.domain", "import services.review.domain  # noqa", "Services are independent of each other"),
        ("runtime.outbox", "import services.budget.domain  # noqa", "Layers"),
        ("schemas.events", "import runtime.kafka  # noqa", "Layers"),
        ("audit.verify", "import services.notify.domain  # noqa", "Layers"),
        ("services.intake.portals", "import services.intake.app  # noqa", "Tools do not import a composition root"),
    ],
    ids=["service-to-service", "runtime-to-service", "schemas-to-runtime", "audit-to-service", "tool-to-root"],
)
def test_a_deliberate_violation_fails_the_check(tmp_path: Path, module: str, line: str, contract: str) -> None:
    tree = copy_of_the_tree(tmp_path)
    violate(tree, module, line)
    done = lint_imports(tree)
    assert done.returncode != 0, "the contracts must refuse the violation"
    assert any(row.startswith(contract) and row.endswith("BROKEN") for row in done.stdout.splitlines()), done.stdout
