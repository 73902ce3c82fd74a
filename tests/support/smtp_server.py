"""A real SMTP server for alertrelay's mail tests (aiosmtpd).

Each accepted message is written to OUT/<n>.json with the envelope, the raw
data, whether the session was encrypted and who authenticated. Recipients
named reject-*@... get a 550 and tempfail-*@... a 451, as a real MTA would
answer for an unknown or over-quota mailbox.

Usage: smtp_server.py --port P --out DIR [--cert C --key K]
                      [--mode plain|starttls|require-starttls|smtps]
                      [--auth USER:PASS]
Prints "READY" once listening; runs until killed.
"""

import argparse
import asyncio
import itertools
import json
import os
import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Recorder:
    def __init__(self, out, implicit_tls):
        self.out = out
        # With smtps the listening socket itself is TLS: no plain session exists.
        self.implicit_tls = implicit_tls
        self.counter = itertools.count(1)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local.startswith("reject-"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if local.startswith("tempfail-"):
            return f"451 4.2.2 <{address}>: Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        n = next(self.counter)
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "data": envelope.content.decode("utf-8", "replace"),
            "tls": self.implicit_tls or session.ssl is not None,
            "auth_user": getattr(session, "recorded_user", None),
        }
        tmp = os.path.join(self.out, f".{n}.tmp")
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(self.out, f"{n}.json"))
        return "250 Message accepted for delivery"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument(
        "--mode",
        default="plain",
        choices=["plain", "starttls", "require-starttls", "smtps"],
    )
    p.add_argument("--auth")
    a = p.parse_args()

    tls = None
    if a.cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(a.cert, a.key)

    kwargs = {}
    if a.auth:
        user, password = a.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (
                isinstance(auth_data, LoginPassword)
                and auth_data.login.decode() == user
                and auth_data.password.decode() == password
            )
            if ok:
                session.recorded_user = user
            return AuthResult(success=ok, handled=False)

        kwargs.update(
            authenticator=authenticator,
            auth_required=True,
            # Credentials only over TLS, as real servers insist.
            # (aiosmtpd does not see smtps sessions as TLS; they are.)
            auth_require_tls=a.mode in ("starttls", "require-starttls"),
        )
    if a.mode in ("starttls", "require-starttls"):
        kwargs["tls_context"] = tls
        kwargs["require_starttls"] = a.mode == "require-starttls"
    elif a.mode == "smtps":
        kwargs["ssl_context"] = tls

    controller = Controller(
        Recorder(a.out, a.mode == "smtps"), hostname="127.0.0.1", port=a.port, **kwargs
    )
    if a.mode == "smtps":
        # The controller's own readiness probe does not speak TLS.
        controller.ready_timeout = 5
    controller.start()
    print("READY", flush=True)
    try:
        asyncio.get_event_loop().run_forever()
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    sys.exit(main())
