import asyncio, sys
import pytest
from tests.integration.test_audit_log import run_pipeline, SMALL_YEAR
from tests.support import REPO
pytestmark = pytest.mark.e2e

async def test_debug(services, portal_token, kafka_bootstrap):
    apps = await run_pipeline(portal_token, kafka_bootstrap)
    for args in (["budget", "2083", "--bootstrap", kafka_bootstrap], ["budget", "2083", "--bootstrap", kafka_bootstrap, "--json"]):
        p = await asyncio.create_subprocess_exec(sys.executable, "-m", "audit", *args, cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await p.communicate()
        print(p.returncode, out.decode()[-3000:])
