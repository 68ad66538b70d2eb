"""The dev and test stacks' mail catcher: an SMTP server (aiosmtpd) that keeps every message in a Maildir.

Why: the approval and notification handlers send email, and with no mail server on the developer's machine
every approval logged a failed delivery to port 25. `deploy/stack up` runs this as the `mailcatcher`
process on gateway port + 3 and points the handlers at it (FLOWLINE_SMTP_HOST/PORT, unless you set them),
so each email lands in `<state dir>/mail/new/` (one file per message, readable with any mail client or
`cat`). Development tooling only: production sets FLOWLINE_SMTP_* to a real server.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import SMTP

from schemas.process import run_process
from schemas.settings import env, env_int, given

log = logging.getLogger("flowline.mailcatcher")


def mail_dir(state_dir: str | os.PathLike) -> Path:
    """Where the catcher keeps messages (a Maildir: new messages in `new/`)."""
    return Path(state_dir) / "mail"


async def serve(directory: Path, host: str, port: int, stop: asyncio.Event) -> None:
    directory.parent.mkdir(parents=True, exist_ok=True)
    for sub in ("tmp", "new", "cur"):  # a Maildir (aiosmtpd's Mailbox creates it only when absent)
        (directory / sub).mkdir(parents=True, exist_ok=True)
    handler = Mailbox(directory)
    server = await asyncio.get_running_loop().create_server(lambda: SMTP(handler, hostname=host), host, port)
    log.info("mail catcher on smtp://%s:%d, messages in %s", host, port, directory / "new")
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()


def main() -> int:
    state = given("FLOWLINE_STATE_DIR") or ".flowline/dev"
    host = env("FLOWLINE_MAILCATCHER_HOST")
    port = int(given("FLOWLINE_MAILCATCHER_PORT") or env_int("FLOWLINE_GATEWAY_PORT") + 3)
    stop = asyncio.Event()
    return run_process(lambda: serve(mail_dir(state), host, port, stop), stop.set)


if __name__ == "__main__":
    raise SystemExit(main())
