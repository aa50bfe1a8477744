"""`flatroute controller run|status`."""

from __future__ import annotations

import argparse
import fcntl
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from controller.inventory import StaticFileInventory
from controller.publisher import FilePublisher
from controller.reconciler import DEFAULT_RELEASE_GRACE, Reconciler
from controller.status import gather, render, render_json
from flatroute import logging as flog
from flatroute.errors import FieldError, FlatrouteError, InvalidInput

DEFAULT_STATE_DIR = "/var/lib/flatroute/controller"


def register(sub: Any) -> None:
    ctl = sub.add_parser(
        "controller", help="the central reconciler: allocate, plan, publish node states",
        description="The controller owns the whole picture: it allocates pod blocks, ASNs, "
        "locators and SIDs, plans SRv6 across sites and publishes one NodeState per node. "
        "It never touches netlink or BGP sessions.")
    csub = ctl.add_subparsers(dest="controller_command", metavar="COMMAND")
    ctl.set_defaults(func=lambda _args: (ctl.print_help(), 2)[1])

    run = csub.add_parser(
        "run", help="plan and publish node states (static mode: a fabric file)",
        description="Static mode: read the fabric file, keep the allocation ledger in "
        "STATE_DIR/ledger.json and publish STATE_DIR/nodes/<node>.json (atomically, only "
        "when changed). Re-plans every --interval seconds and when the file changes; a bad "
        "edit is rejected whole and the last good state stays published. Exit status with "
        "--once: 0 published, 1 a reported problem (e.g. exhaustion), 2 invalid fabric.")
    run.add_argument("--fabric", help="fabric description (YAML); required unless "
                     "--kubernetes")
    run.add_argument("--state-dir", default=DEFAULT_STATE_DIR,
                     help=f"ledger, node states and status (default {DEFAULT_STATE_DIR})")
    run.add_argument("--once", action="store_true", help="plan and publish once, then exit")
    from controller.kube_inventory import add_arguments as kube_arguments

    kube_arguments(run)
    run.add_argument("--interval", type=_positive, default=30.0, metavar="S",
                     help="re-plan at least every S seconds (default 30)")
    run.add_argument("--poll", type=_positive, default=0.5, metavar="S",
                     help="check the fabric file for changes every S seconds (default 0.5)")
    run.add_argument("--release-grace", type=_non_negative, default=DEFAULT_RELEASE_GRACE,
                     metavar="SECONDS", help="keep a removed node's allocations reserved this "
                     f"long (default {DEFAULT_RELEASE_GRACE:.0f}); its state is withdrawn at once")
    run.add_argument("--log-format", choices=("json", "console"), default="json")
    run.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                     default="info")
    run.set_defaults(func=cmd_run)

    st = csub.add_parser(
        "status", help="nodes, blocks, SIDs, segments, policies; what each speaker applied",
        description="Show what the controller published (per node: blocks, locator, SIDs, "
        "generation, when published) and which generation each node's speaker reports as "
        "applied ('not reported' when it has not), per site the gateways, segments and "
        "policies, and the controller's last error and problems.")
    st.add_argument("--state-dir", default=DEFAULT_STATE_DIR)
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.set_defaults(func=cmd_status)


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _lock(state_dir: Path) -> int:
    """One controller per state directory: a second one would fight over the ledger."""
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_dir / ".controller.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        raise FlatrouteError(f"{state_dir}: another controller is running on this state "
                             "directory") from exc
    return fd


def cmd_run(args: argparse.Namespace) -> int:
    if args.kubernetes:
        from controller.kube_inventory import run_kubernetes

        return run_kubernetes(args)
    flog.configure(json=args.log_format == "json", level=args.log_level)
    state_dir = Path(args.state_dir)
    if not args.fabric:
        raise InvalidInput([FieldError("--fabric", "", "is required (or --kubernetes)")])
    if not Path(args.fabric).is_file():
        raise InvalidInput([FieldError(args.fabric, "", "no such file")])
    lock = _lock(state_dir)
    try:
        reconciler = Reconciler(StaticFileInventory(args.fabric), FilePublisher(state_dir),
                                state_dir, release_grace=args.release_grace)
        if args.once:
            result = reconciler.reconcile()
            if result.error is not None:
                raise result.error
            for p in result.problems:
                print(f"error: {args.fabric}: {p}", file=sys.stderr)
            return result.exit_status
        stop = threading.Event()

        def _stop(signum: int, _frame: FrameType | None) -> None:
            reconciler.log.info("controller_stopping", signal=signal.Signals(signum).name)
            stop.set()

        previous = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            reconciler.run(stop, interval=args.interval, poll=args.poll)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        return 0
    finally:
        os.close(lock)


def cmd_status(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir)
    if not state_dir.is_dir():
        raise InvalidInput([FieldError(str(state_dir), "", "no such state directory")])
    view = gather(state_dir)
    sys.stdout.write(render_json(view) if args.json else render(view))
    return 0
