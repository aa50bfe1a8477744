"""Run the fake API server by hand: ``python -m fakekube --port 8001 --crd deploy/crds.yaml``.

Then ``curl http://127.0.0.1:8001/api/v1/nodes`` or point a kubernetes client at it.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading

from fakekube.server import FakeApiServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fakekube",
                                     description="A FAKE Kubernetes API server for tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--crd", action="append", default=[], metavar="YAML",
                        help="register the CustomResourceDefinitions in this file (repeatable)")
    parser.add_argument("--history-size", type=int, default=1000)
    parser.add_argument("--bookmark-interval", type=float, default=1.0)
    args = parser.parse_args(argv)
    fake = FakeApiServer(args.host, args.port, history_size=args.history_size,
                         bookmark_interval=args.bookmark_interval)
    for path in args.crd:
        fake.load_crds(path)
    done = threading.Event()
    # before the address is printed: whoever reads it may stop us at once
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    print(fake.start(), flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        done.wait()
    fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
