"""`flatroute render FABRIC --platform ... [--out DIR] [--with-secrets] [--diff DIR]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from flatroute.errors import FieldError, InvalidInput
from flatroute.fabric import load_fabric
from flatroute.plan import load_ledger, plan
from render import PLATFORMS, render
from render.common import RenderedFile
from render.output import diff_files, relpath, write_files

ALL = "all"


def register(sub: Any) -> None:
    p = sub.add_parser(
        "render", help="render the ToR/spine/WAN router side of the peering",
        description="Render one configuration per ToR, spine and WAN router of a fabric. "
        "Without --platform each router uses its own `platform:` field; --platform forces one "
        "platform for every router, `all` renders every platform into DIR/<platform>/. "
        "Without --out (or --diff) the files go to stdout, each after a line "
        "'### ROUTER FILE'. Secrets are written only with --with-secrets. "
        "Exit 0 ok, 1 --diff found differences, 2 invalid input or a feature the platform "
        "cannot express.")
    p.add_argument("fabric", help="fabric description (YAML)")
    p.add_argument("--platform", choices=(*PLATFORMS, ALL, VAGRANT), default=None,
                   help="force this platform for every router (default: each router's own); "
                   "'vagrant' writes a VM lab of the whole fabric (Vagrantfile, provisioning)")
    p.add_argument("--out", metavar="DIR", type=Path,
                   help="write files into DIR (atomically, only those that changed)")
    p.add_argument("--diff", metavar="DIR", type=Path,
                   help="show a unified diff against a previous render in DIR; writes nothing")
    p.add_argument("--with-secrets", action="store_true",
                   help="write the MD5 secret read from spec.bgp.md5.secretRef.file")
    p.add_argument("--ledger", metavar="FILE",
                   help="allocation ledger (JSON), as given to `flatroute plan`, so the "
                   "router side matches the nodes' allocations")
    p.add_argument("--router", action="append", default=[], metavar="NAME",
                   help="render only this router (repeatable)")
    p.set_defaults(func=cmd_render)


VAGRANT = "vagrant"


def _render_all(args: argparse.Namespace) -> list[RenderedFile]:
    fabric = load_fabric(args.fabric)
    ledger = load_ledger(args.ledger) if args.ledger else None
    the_plan = plan(fabric, ledger)
    routers = tuple(args.router)
    if args.platform == VAGRANT:
        if routers or args.with_secrets:
            raise InvalidInput([FieldError("--platform", "", "vagrant renders the whole lab: "
                                           "--router and --with-secrets do not apply")])
        from render.vagrant import render_vagrant

        return render_vagrant(fabric, the_plan)
    if args.platform != ALL:
        return render(fabric, the_plan, platform=args.platform,
                      with_secrets=args.with_secrets, routers=routers)
    files: list[RenderedFile] = []
    errors: list[FieldError] = []
    for name in PLATFORMS:
        try:
            files += render(fabric, the_plan, platform=name, with_secrets=args.with_secrets,
                            routers=routers)
        except InvalidInput as exc:
            errors += exc.errors
    if errors:
        raise InvalidInput(errors)
    return files


def cmd_render(args: argparse.Namespace) -> int:
    if args.out is not None and args.diff is not None:
        raise InvalidInput([FieldError("--diff", "", "give either --out or --diff, not both")])
    files = _render_all(args)
    by_platform = args.platform == ALL
    if args.diff is not None:
        text = diff_files(files, args.diff, by_platform=by_platform)
        sys.stdout.write(text)
        return 1 if text else 0
    if args.out is not None:
        written = write_files(files, args.out, by_platform=by_platform,
                              secret=args.with_secrets)
        for path in written:
            print(f"wrote {path}", file=sys.stderr)
        produced = {args.out / relpath(f, by_platform) for f in files}
        for path in sorted(args.out.rglob("*")):
            rel = path.relative_to(args.out).as_posix()
            if path.is_file() and path not in produced and not rel.startswith(".") and (
                    "/." not in rel) and not args.router:
                print(f"note: {path} is not part of this render (left alone)", file=sys.stderr)
        print(f"{len(files)} files, {len(written)} changed", file=sys.stderr)
        return 0
    for f in files:
        sys.stdout.write(f"### {f.router} {relpath(f, by_platform)}\n{f.text}")
    return 0
