"""The `flatroute` command line. Each area mounts its own subcommands through `register`.

The areas are imported statically: a missing one is an ImportError at start-up, never a
command silently dropped from the help.

Exit status: 0 success, 2 invalid input (with one line per problem: file, field, value),
1 any other failure.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from cli import fabric as cli_core
from cni import cli as cni_cli
from controller import cli as controller_cli
from flatroute import __version__
from flatroute.errors import FlatrouteError, InvalidInput
from lab import cli as lab_cli
from render import cli as render_cli
from speaker import cli as speaker_cli

# Modules that add subcommands: each has `register(subparsers) -> None`, and sets
# `func` on its parsers to a callable taking the parsed args and returning an exit status.
_AREAS = (cli_core, render_cli, controller_cli, speaker_cli, cni_cli, lab_cli)

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flatroute",
        description="Routed L3 Kubernetes networking: plain BGP to the ToRs, SRv6 across "
        "sites, no overlay. One fabric file drives the nodes, the ToR configs and the lab.",
    )
    parser.add_argument("--version", action="version", version=f"flatroute {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for area in _AREAS:
        area.register(sub)
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
