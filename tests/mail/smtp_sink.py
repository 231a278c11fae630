"""A real SMTP server for the tests (aiosmtpd): accepts every message and writes it, parsed,
to OUT_DIR/<n>.json (envelope, headers, and the decoded text and HTML parts).

usage: smtp_sink.py PORT OUT_DIR
Prints "ready" once listening; exits when its standard input closes (the test ended).
"""

import email
import email.policy
import json
import os
import sys
import threading

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        parts = {}
        for part in msg.walk():
            kind = part.get_content_type()
            if kind in ("text/plain", "text/html") and kind not in parts:
                parts[kind] = part.get_content()
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "from": str(msg["From"]),
            "to": str(msg["To"]),
            "subject": str(msg["Subject"]),
            "message_id": str(msg["Message-ID"]),
            "text": parts.get("text/plain", ""),
            "html": parts.get("text/html", ""),
        }
        with self.lock:
            self.count += 1
            name = os.path.join(self.out_dir, "%04d.json" % self.count)
        # Whole files only: the test polls the folder.
        with open(name + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(name + ".tmp", name)
        return "250 Message accepted for delivery"


def main():
    port, out_dir = int(sys.argv[1]), sys.argv[2]
    controller = Controller(Sink(out_dir), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    try:
        sys.stdin.read()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
