"""Every ``python -m ...`` entry point answers ``--help`` with its usage and its exit codes, exits 0,
and does nothing else: no file written, no broker or database asked (the environment here has no
settings at all, so a CLI that read them before parsing its arguments would fail)."""

from __future__ import annotations

import contextlib
import io
import os
import re
import runpy
import sys
import warnings
from pathlib import Path

import pytest

from tests.support import REPO

pytestmark = pytest.mark.ops

PACKAGES = ("audit", "runtime", "schemas", "services")


def entry_points() -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            if path.name == "__main__.py":
                found.append(".".join(path.relative_to(REPO).parent.parts))
            elif 'if __name__ == "__main__":' in text:
                found.append(".".join(path.relative_to(REPO).with_suffix("").parts))
    return found


def written(root: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def help_of(module: str) -> tuple[int, str]:
    """``python -m module --help`` in this process (imports are shared, so the whole set takes seconds)."""
    out = io.StringIO()
    sys.argv = [module, "--help"]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out), warnings.catch_warnings():
            # runpy warns that the package imported the module first (services.intake.api imports openapi).
            warnings.simplefilter("ignore", RuntimeWarning)
            runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as done:
        return (done.code if isinstance(done.code, int) else 1), out.getvalue()
    return 0, out.getvalue()


def test_every_entry_point_answers_help_with_its_exit_codes_and_does_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    modules = entry_points()
    assert {"services.intake", "services.statistics", "schemas.generate", "audit", "runtime.topics"} <= set(modules)
    before = written(REPO / "schemas")
    for name in list(os.environ):
        if name not in ("PATH", "HOME"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    failures = []
    for module in modules:
        code, out = help_of(module)
        text = re.sub(r"\s+", " ", out)
        if code != 0 or "usage" not in text.lower() or "Exit codes:" not in text:
            failures.append(f"{module}: exit {code}\n{out[-600:]}")
    assert not failures, "\n\n".join(failures)
    assert list(tmp_path.iterdir()) == [], "--help left files behind"
    assert written(REPO / "schemas") == before, "--help wrote the schemas"
