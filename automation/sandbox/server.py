"""The sandbox server process: moto's WSGI application behind the emulator extension.

    python -m gpufleet.automation.sandbox.server --port 0 --account 111111111111 --ready-file F

Binds 127.0.0.1 (port 0: a free port the kernel picks), then writes ``{"pid", "host", "port"}`` to
the ready file (atomically) so the parent knows where it listens, then warms moto up in the
background (automation/sandbox/warmup.py). SIGTERM stops it cleanly.
Requests signed with a key moto did not issue land in ``--account`` (the platform account: the
operator's own credentials); STS AssumeRole credentials land in the role's account, as in AWS.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

SERVICES = ("ec2", "autoscaling", "sts", "iam", "dynamodb", "ram")
"""Backends loaded before the server reports ready, so the first calls are not slow."""


def build_app(default_account: str, preload: bool = True):  # noqa: ANN201 - a WSGI callable
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    from gpufleet.automation.sandbox.extension import EmulatorExtension

    dispatcher = DomainDispatcherApplication(create_backend_app)
    if preload:
        from moto.backends import get_backend

        for service in SERVICES:
            get_backend(service)
    return EmulatorExtension(dispatcher, default_account=default_account)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpufleet.automation.sandbox.server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--account", default="111111111111",
                        help="account of requests signed with keys moto did not issue")
    parser.add_argument("--ready-file", type=Path, default=None)
    args = parser.parse_args(argv)

    # MOTO_ACCOUNT_ID would put every request in one account; the extension maps unknown keys instead.
    os.environ.pop("MOTO_ACCOUNT_ID", None)
    # Each account's EC2 backend would load ~1300 public AMIs (0.4 s per account); nodes use one fake AMI.
    os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import make_server

    class QuietHandler(MotoRequestHandler):
        # Keep-alive: botocore reuses its connections, sparing a connect and a server thread per call.
        protocol_version = "HTTP/1.1"

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            pass  # the extension keeps a request log; one line per call would flood sandbox.log

    app = build_app(args.account)
    server = make_server(args.host, args.port, app, threaded=True, request_handler=QuietHandler)
    host, port = server.server_address[:2]
    if args.ready_file:
        tmp = args.ready_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "host": host, "port": port}))
        tmp.replace(args.ready_file)
    print(f"gpufleet sandbox listening on http://{host}:{port} (pid {os.getpid()})", flush=True)
    app.start_warm_up()

    def stop(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever(poll_interval=0.1)
    app.node_probes.remove()
    sys.stdout.flush()
    # Nothing to flush beyond stdout: skip interpreter teardown of moto's modules (about a second).
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
