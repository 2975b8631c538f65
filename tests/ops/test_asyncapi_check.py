"""The AsyncAPI document passes the official parser (@asyncapi/parser, what ``asyncapi validate`` runs;
tools/asyncapi, installed by deploy/venv.sh; missing, it fails), and the check in ``make check`` fails
a document broken on purpose.

Run: ``.venv/bin/pytest tests/ops/test_asyncapi_check.py -q``
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import REPO

pytestmark = pytest.mark.ops

VALIDATE = REPO / "tools" / "asyncapi" / "validate.mjs"
DOCUMENT = REPO / "schemas" / "asyncapi.json"


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    assert node, "node is not installed: deploy/venv.sh installs it with tools/asyncapi"
    assert (REPO / "tools" / "asyncapi" / "node_modules" / "@asyncapi" / "parser").is_dir(), "run deploy/venv.sh"
    return subprocess.run([node, str(VALIDATE), str(path)], capture_output=True, text=True, timeout=120, check=False)


def test_the_committed_document_is_valid_and_a_broken_one_is_not(tmp_path: Path) -> None:
    clean = validate(DOCUMENT)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "valid AsyncAPI 3." in clean.stdout
    broken = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    operation = next(iter(broken["operations"].values()))
    operation["channel"] = {"$ref": "#/channels/no-such-channel"}  # an unresolvable reference
    operation["action"] = "publish"  # AsyncAPI 3 knows send and receive only
    (tmp_path / "asyncapi.json").write_text(json.dumps(broken), encoding="utf-8")
    failed = validate(tmp_path / "asyncapi.json")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "error" in failed.stdout
