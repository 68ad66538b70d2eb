"""The dev and test stacks' mail catcher: an SMTP server (aiosmtpd) that keeps every message in a Maildir.

Why: the approval and notification handlers send email, and with no mail server on the developer's machine
every approval logged a failed delivery to port 25. `deploy/stack up` runs this as the `mailcatcher`
process on gateway port + 3 and points the handlers at it (FLOWLINE_SMTP_HOST/PORT, unless you set them),
so each email lands in `<state dir>/mail/new/` (one file per message, readable with any mail client or
`cat`). Development tooling only: production sets FLOWLINE_SMTP_* to a real server.

Why it writes the files itself (`Catcher`) instead of aiosmtpd's `Mailbox`: under the benchmarks' load the
catcher took as much CPU per workflow as the approval handler that sends the mail (2.7-3.1 ms per
`procurement` workflow), and py-spy put half of its busy samples in `mailbox.Maildir.add`: an fsync per
message, the message parsed into an `email.message.Message` and written back out. A catcher has nothing
to parse and no durability to promise, so it writes the bytes it received, with the envelope in three
header lines, through `tmp/` into `new/` (the Maildir delivery: a reader never sees half a file).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import time
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session

from schemas.process import run_process
from schemas.settings import env, env_int, given

log = logging.getLogger("flowline.mailcatcher")


def mail_dir(state_dir: str | os.PathLike) -> Path:
    """Where the catcher keeps messages (a Maildir: new messages in `new/`)."""
    return Path(state_dir) / "mail"


class Catcher:
    """aiosmtpd handler: each message into the Maildir `directory` as received, the envelope on top."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._names = itertools.count()
        self._host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes | bytearray) else \
            str(envelope.content or "").encode()
        head = (f"X-Peer: {session.peer}\nX-MailFrom: {envelope.mail_from}\n"
                f"X-RcptTo: {', '.join(envelope.rcpt_tos)}\n").encode(errors="replace")
        now = time.time()
        # Maildir's unique name: seconds, then microseconds, pid and a counter of this process, then the host
        name = f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{next(self._names)}.{self._host}"
        tmp = self.directory / "tmp" / name
        tmp.write_bytes(head + bytes(content).replace(b"\r\n", b"\n"))
        os.rename(tmp, self.directory / "new" / name)
        return "250 OK"


async def serve(directory: Path, host: str, port: int, stop: asyncio.Event) -> None:
    directory.parent.mkdir(parents=True, exist_ok=True)
    for sub in ("tmp", "new", "cur"):  # a Maildir
        (directory / sub).mkdir(parents=True, exist_ok=True)
    handler = Catcher(directory)
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
    # aiosmtpd logs every command at INFO ("mail.log"): a line per message is the catcher's own busiest work
    return run_process(lambda: serve(mail_dir(state), host, port, stop), stop.set, quiet=("mail.log",))


if __name__ == "__main__":
    raise SystemExit(main())
