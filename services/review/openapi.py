"""The caseworker API's OpenAPI 3.1 document: served at /openapi.json and committed under schemas/openapi/.

python -m services.review.openapi          # write schemas/openapi/review.json from the code
python -m services.review.openapi --check  # exit 1 if the committed document drifts from the code
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, cast

from runtime import openapi
from services.review.api import DESCRIPTION, build_api

if TYPE_CHECKING:
    import asyncpg

    from runtime.commands import CommandRunner


def document() -> dict[str, Any]:
    # The routes read their dependencies only while serving a request, so none are needed to describe them.
    return build_api(cast("asyncpg.Pool", None), cast("CommandRunner", None)).openapi()


if __name__ == "__main__":
    sys.exit(openapi.main(sys.argv[1:], DESCRIPTION, document))
