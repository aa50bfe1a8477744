"""`flatroute validate` and `flatroute plan`."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from flatroute import gcpause
from flatroute.errors import FieldError, InvalidInput
from flatroute.fabric import load_fabric
from flatroute.plan import load_ledger, plan, save_ledger
from flatroute.plan.output import plan_to_json, plan_to_table, plan_to_yaml


def register(sub: Any) -> None:
    v = sub.add_parser(
        "validate", help="check fabric files and report every problem at once",
        description="Validate one or more fabric descriptions. Prints one line per problem "
        "(file: field path: message (got value)). Exit 2 if any file is invalid.")
    v.add_argument("fabric", nargs="+", help="fabric description (YAML)")
    v.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "plan", help="show what every node gets: ASN, blocks, peers, locator, SIDs",
        description="Plan a fabric: per node ASN, pod blocks, router-id, BGP peers, SRv6 "
        "locator and SIDs; per site the aggregates and cross-site SRv6 segments. With "
        "--ledger, earlier allocations are kept (and --update-ledger records new ones).")
    p.add_argument("fabric", help="fabric description (YAML)")
    p.add_argument("--ledger", metavar="FILE", help="allocation ledger (JSON) to start from")
    p.add_argument("--update-ledger", action="store_true",
                   help="write the new allocations back to --ledger")
    p.add_argument("--format", choices=("table", "json", "yaml"), default="table")
    p.set_defaults(func=cmd_plan)


def cmd_validate(args: argparse.Namespace) -> int:
    errors: list[FieldError] = []
    for path in args.fabric:
        try:
            f = load_fabric(path)
        except InvalidInput as exc:
            errors.extend(exc.errors)
            continue
        nodes = len(f.nodes)
        racks = len(f.racks())
        print(f"{path}: ok ({len(f.sites)} sites, {racks} racks, {nodes} nodes)")
    if errors:
        raise InvalidInput(errors)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    fabric = load_fabric(args.fabric)
    if args.update_ledger and not args.ledger:
        raise InvalidInput([FieldError("--update-ledger", "", "needs --ledger FILE")])
    ledger = load_ledger(args.ledger) if args.ledger else None
    now = datetime.now(UTC).isoformat(timespec="seconds")
    with gcpause.paused():  # thousands of nodes make no cycles: see flatroute.gcpause
        result = plan(fabric, ledger, now=now)
    render = {"table": plan_to_table, "json": plan_to_json, "yaml": plan_to_yaml}[args.format]
    sys.stdout.write(render(result))
    if args.update_ledger:
        save_ledger(args.ledger, result.ledger)
    if result.problems:
        for problem in result.problems:
            print(f"error: {args.fabric}: {problem}", file=sys.stderr)
        return 1
    return 0
