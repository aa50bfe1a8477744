"""`flatroute lab up|test|status|exec|fail|heal|down`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from flatroute.errors import FlatrouteError
from lab.state import DEFAULT_PREFIX, LabState, load


class NoLab(FlatrouteError):
    """No lab with that prefix is up."""


def _say(msg: str) -> None:
    print(msg, flush=True)


def register(sub: Any) -> None:
    lab = sub.add_parser(
        "lab", help="the whole fabric on this machine: namespaces, FRR ToRs, speakers, pods",
        description="Emulate a fabric on one Linux machine (root): real FRR on the routers "
        "with the rendered configs, the real speaker with ExaBGP on every node, the real "
        "controller, and pods made by the real CNI plugin.")
    lsub = lab.add_subparsers(dest="lab_command", metavar="ACTION", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--prefix", default=os.environ.get("FLATROUTE_LAB_PREFIX",
                                                          DEFAULT_PREFIX),
                       help="namespace name prefix, one lab per prefix (default: %(default)s)")

    up = lsub.add_parser("up", help="build and start the lab from a fabric file")
    up.add_argument("fabric", type=Path)
    up.add_argument("--pods", type=int, default=2, metavar="N", help="pods per node")
    up.add_argument("--kubernetes", action="store_true",
                    help="Kubernetes mode: controller and speakers use the Kubernetes API "
                    "(the project's FAKE API server: no real one can run here)")
    common(up)
    up.set_defaults(func=cmd_up)

    test = lsub.add_parser("test", help="connectivity matrix, BGP sessions, SRv6 proof; "
                           "ends with 'N passed, M failed'")
    common(test)
    test.set_defaults(func=cmd_test)

    status = lsub.add_parser("status", help="sessions, routes, SIDs and pods per router/node")
    common(status)
    status.set_defaults(func=cmd_status)

    ex = lsub.add_parser("exec", help="run a command in a lab router, node or pod by name")
    ex.add_argument("name")
    ex.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD...")
    common(ex)
    ex.set_defaults(func=cmd_exec)

    for verb, helptext in (("fail", "take a LINK (A~B), NODE or TOR down"),
                           ("heal", "bring a failed LINK, NODE or TOR back")):
        p = lsub.add_parser(verb, help=helptext)
        p.add_argument("target", help="a link 'A~B' (e.g. tk-n1~tk-r1-a), a node or a router")
        common(p)
        p.set_defaults(func=cmd_fail if verb == "fail" else cmd_heal)

    down = lsub.add_parser("down", help="remove everything the lab made (idempotent)")
    common(down)
    down.set_defaults(func=cmd_down)


def _state(prefix: str) -> LabState:
    state = load(prefix)
    if state is None or state.phase != "up":
        raise NoLab(f"no lab is up with prefix {prefix!r} (flatroute lab up FABRIC)")
    return state


def cmd_up(args: argparse.Namespace) -> int:
    from lab.up import up

    if args.pods < 0:
        raise FlatrouteError("--pods must be 0 or more")
    state = up(args.fabric, prefix=args.prefix, pods_per_node=args.pods, say=_say,
               kubernetes=args.kubernetes)
    from lab.view import summary

    _say("")
    for line in summary(state):
        _say(line)
    _say(f"lab up in {state.up_seconds:.1f} s. Next: flatroute lab test"
         + (f" --prefix {args.prefix}" if args.prefix != DEFAULT_PREFIX else ""))
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    from lab.check import run_tests
    from lab.view import topology

    state = _state(args.prefix)
    report = run_tests(state, topology(state), _say)
    return 0 if report.failed == 0 else 1


def cmd_status(args: argparse.Namespace) -> int:
    from lab.view import status

    for line in status(_state(args.prefix)):
        _say(line)
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    from lab.view import exec_argv

    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    argv = exec_argv(_state(args.prefix), args.name, cmd)
    sys.stdout.flush()
    os.execvp(argv[0], argv)
    return 127  # not reached


def cmd_fail(args: argparse.Namespace) -> int:
    from lab.view import set_target

    for line in set_target(_state(args.prefix), args.target, up=False):
        _say(line)
    return 0


def cmd_heal(args: argparse.Namespace) -> int:
    from lab.view import set_target

    for line in set_target(_state(args.prefix), args.target, up=True):
        _say(line)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from lab.down import down

    n = down(args.prefix, say=_say)
    _say(f"lab {args.prefix!r} is down ({n} namespaces removed)" if n else
         f"nothing to remove for lab {args.prefix!r}")
    return 0
