"""The statistics read API's OpenAPI 3.1 document: served at /openapi.json, committed under schemas/openapi/.

python -m services.statistics.openapi          # write schemas/openapi/statistics.json from the code
python -m services.statistics.openapi --check  # exit 1 if the committed document drifts from the code
"""

from __future__ import annotations

import sys
from typing import Any

from runtime import openapi
from services.statistics.api import DESCRIPTION, build_api


def document() -> dict[str, Any]:
    # The routes read the totals only while serving a request, so none are needed to describe them.
    return build_api(dict).openapi()


if __name__ == "__main__":
    sys.exit(openapi.main(sys.argv[1:], DESCRIPTION, document))
