"""The portal API's OpenAPI 3.1 document: served at /openapi.json and committed under schemas/openapi/.

python -m services.intake.openapi          # write schemas/openapi/intake.json from the code
python -m services.intake.openapi --check  # exit 1 if the committed document drifts from the code
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, cast

from runtime import openapi
from schemas.application import FundingApplication
from services.intake.models import WithdrawalRequest

if TYPE_CHECKING:
    from services.intake.api import Intake

# Bodies the routes read themselves (to hash the raw bytes and report every error in our own codes).
DESCRIPTION = openapi.ApiDescription(
    "intake",
    8001,
    {"applications": "Submitting, following and withdrawing a portal's own applications"},
    raw_bodies=(FundingApplication, WithdrawalRequest),
)
DOCUMENT_PATH = DESCRIPTION.path


def document() -> dict[str, Any]:
    from services.intake.api import build_api

    # The routes read their dependencies only while serving a request, so none are needed to describe them.
    return build_api(cast("Intake", None)).openapi()


def drifted() -> bool:
    return openapi.drifted(document(), DESCRIPTION)


if __name__ == "__main__":
    sys.exit(openapi.main(sys.argv[1:], DESCRIPTION, document))
