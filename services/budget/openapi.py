"""The budget administration API's OpenAPI 3.1 document: served at /openapi.json, committed under schemas/openapi/.

python -m services.budget.openapi          # write schemas/openapi/budget.json from the code
python -m services.budget.openapi --check  # exit 1 if the committed document drifts from the code
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, cast

from runtime import openapi
from services.budget.api import DESCRIPTION, build_api

if TYPE_CHECKING:
    import asyncpg

    from runtime.commands import CommandRunner
    from services.budget.line import LineSettings
    from services.budget.settings import BudgetSettings


def document() -> dict[str, Any]:
    # The routes read their dependencies only while serving a request, so none are needed to describe them.
    nothing: Any = None
    return build_api(
        cast("asyncpg.Pool", nothing),
        cast("CommandRunner", nothing),
        cast("BudgetSettings", nothing),
        cast("LineSettings", nothing),
    ).openapi()


if __name__ == "__main__":
    sys.exit(openapi.main(sys.argv[1:], DESCRIPTION, document))
