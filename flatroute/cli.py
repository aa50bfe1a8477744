"""The `flatroute` command line. Each area mounts its own subcommands through `register`.

Exit status: 0 success, 2 invalid input (with one line per problem: file, field, value),
1 any other failure.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from flatroute import __version__
from flatroute.errors import FlatrouteError, InvalidInput

# Modules that add subcommands: each has `register(subparsers) -> None`, and sets
# `func` on its parsers to a callable taking the parsed args and returning an exit status.
_AREAS = (
    "flatroute.cli_core",
    "flatroute.render.cli",
    "controller.cli",
    "speaker.cli",
    "cni.cli",
    "flatroute.lab.cli",
)

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flatroute",
        description="Routed L3 Kubernetes networking: plain BGP to the ToRs, SRv6 across "
        "sites, no overlay. One fabric file drives the nodes, the ToR configs and the lab.",
    )
    parser.add_argument("--version", action="version", version=f"flatroute {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _AREAS:
        try:
            module: Any = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name or (exc.name and name.startswith(exc.name + ".")):
                continue  # that area is not part of this build
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Handler | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return func(args)
    except InvalidInput as exc:
        for err in exc.errors:
            print(f"error: {err}", file=sys.stderr)
        return exc.exit_status
    except FlatrouteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if os.environ.get("FLATROUTE_DEBUG"):
            raise
        print(f"error: internal error: {type(exc).__name__}: {exc} "
              "(set FLATROUTE_DEBUG=1 for a traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
