"""A local SMTP sink for development: every mail it receives is written to a folder as .eml.

python -m services.notify.smtp_sink [--port 8025] [--dir .state/mail]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


class MailFolder:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.count = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.count += 1
        content: Any = envelope.original_content or envelope.content or b""
        path = self.folder / f"{time.time_ns()}-{self.count}.eml"
        path.write_bytes(content if isinstance(content, bytes) else str(content).encode())
        return "250 Message accepted for delivery"


async def serve(port: int, folder: Path) -> None:
    loop = asyncio.get_running_loop()
    handler = MailFolder(folder)
    server = await loop.create_server(lambda: SMTP(handler, hostname="egov-smtp-sink"), "127.0.0.1", port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"smtp sink on 127.0.0.1:{port}, writing to {folder}", flush=True)
    await stop.wait()
    server.close()
    await server.wait_closed()


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m services.notify.smtp_sink",
        description=__doc__,
        epilog="Exit codes: 0 stopped, 1 could not listen, 2 usage.",
    )
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--dir", type=Path, default=Path(".state/mail"))
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.dir))


if __name__ == "__main__":
    main()
