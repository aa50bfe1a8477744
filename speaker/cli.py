"""`flatroute speaker run|status|drain`."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from typing import Any

from flatroute.errors import AdapterError, InvalidInput, field_error

DEFAULTS = {"config_dir": "/etc/flatroute", "run_dir": "/run/flatroute",
            "state_dir": "/var/lib/flatroute"}


def _absolute(path: str) -> str:
    """Paths become absolute at the edge: ExaBGP runs in the run dir, and a relative path
    handed to it (its configuration, its env file) would name another file there."""
    return os.path.abspath(path)


def _common(p: argparse.ArgumentParser) -> None:
    node = os.environ.get("NODE_NAME")
    p.add_argument("--node", required=node is None, default=node,
                   help="this node's name (default: $NODE_NAME)")
    p.add_argument("--state-dir", type=_absolute, default=DEFAULTS["state_dir"],
                   help="holds nodes/NODE.json (input) and status/NODE.json (output) "
                   "(default: %(default)s)")
    p.add_argument("--run-dir", type=_absolute, default=DEFAULTS["run_dir"],
                   help="ExaBGP config/env/pid/log, API socket, drain flag, pid file "
                   "(default: %(default)s)")
    p.add_argument("--status-file", type=_absolute, help="status document path "
                   "(default: STATE_DIR/status/NODE.json)")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sp = sub.add_parser("speaker", help="the node agent: BGP to the ToRs, kernel routes, SRv6")
    ssub = sp.add_subparsers(dest="speaker_command", metavar="SUBCOMMAND", required=True)

    run = ssub.add_parser("run", help="run the speaker in the current network namespace")
    _common(run)
    run.add_argument("--config-dir", type=_absolute, default=DEFAULTS["config_dir"],
                     help="base for relative secret paths such as bgp.md5.file "
                     "(default: %(default)s)")
    run.add_argument("--node-state", type=_absolute, metavar="FILE",
                     help="read the node state from FILE instead of STATE_DIR/nodes/NODE.json")
    run.add_argument("--node-file", type=_absolute, help="node file for the CNI plugin "
                     "(default: RUN_DIR/node.json)")
    run.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    run.add_argument("--metrics-listen", metavar="ADDR", default="",
                     help="address for the metrics endpoint (default: all)")
    run.add_argument("--interval", type=float, default=5.0,
                     help="seconds between full reconcile passes (default: %(default)s)")
    run.add_argument("--bpf-dir", type=_absolute, default="/sys/fs/bpf/flatroute",
                     help="where the eBPF SRv6 datapath pins its programs and maps; must be "
                     "inside a mounted bpffs (default: %(default)s)")
    run.add_argument("--log-format", choices=("json", "console"), default="json")
    run.add_argument("--log-level", default="info")
    from speaker.kube_bridge import add_arguments as kube_arguments

    kube_arguments(run)
    run.set_defaults(func=cmd_run)

    st = ssub.add_parser("status", help="show sessions, routes and errors of a speaker; exits "
                         "0 healthy, 1 no readable status, 3 not running, 4 degraded, 5 down "
                         "(docs/speaker.md)")
    _common(st)
    st.add_argument("--json", action="store_true", help="the status document as JSON")
    st.add_argument("--probe", choices=("live", "ready"),
                    help="for a Kubernetes probe: print one line; `live` fails only when the "
                    "speaker is not running, `ready` also when BGP is down (exit 0 or the "
                    "status's code)")
    st.set_defaults(func=cmd_status)

    pr = ssub.add_parser("probe", help="what this kernel can do for SRv6 (kernel seg6, VRF, "
                         "eBPF), tried in a throw-away network namespace")
    pr.add_argument("--json", action="store_true", help="the result as JSON")
    pr.set_defaults(func=cmd_probe)
    doc = sub.add_parser("doctor", help="check this machine before installing: the kernel's "
                         "SRv6 and eBPF capabilities and the datapath `auto` would choose")
    doc.add_argument("--json", action="store_true", help="the result as JSON")
    doc.set_defaults(func=cmd_probe)

    end = ssub.add_parser("end-sid", help="program an SRv6 End SID with the eBPF datapath on "
                          "every interface of this host (for a Linux router whose kernel has "
                          "no seg6local); idempotent")
    end.add_argument("--sid", required=True, help="the End SID (IPv6)")
    end.add_argument("--locator", required=True, help="the router's locator: packets to a "
                     "SID in it other than --sid are dropped and counted, never looped")
    end.add_argument("--bpf-dir", default="/sys/fs/bpf/flatroute-end",
                     help="pin directory inside a mounted bpffs (default: %(default)s)")
    end.add_argument("--remove", action="store_true", help="remove every program, filter, "
                     "pin and map this command made")
    end.set_defaults(func=cmd_end_sid)

    dr = ssub.add_parser("drain", help="withdraw every announcement on purpose (maintenance)")
    _common(dr)
    dr.add_argument("--undo", action="store_true", help="end the drain: announce again")
    dr.add_argument("--timeout", type=float, default=30.0,
                    help="seconds to wait for the speaker to confirm (default: %(default)s)")
    dr.set_defaults(func=cmd_drain)


def _status_path(args: argparse.Namespace) -> str:
    return args.status_file or os.path.join(args.state_dir, "status", f"{args.node}.json")


def cmd_run(args: argparse.Namespace) -> int:
    from flatroute import logging as flog
    from speaker.agent import agent_from_args

    flog.configure(json=args.log_format == "json", level=args.log_level)
    stop = None
    agents: list[Any] = []  # the agent, once made: the bridge wakes its loop on a new state
    if getattr(args, "kubernetes", False):
        from speaker import kube_bridge

        if args.node_state:
            raise InvalidInput([field_error("--node-state", "", "conflicts with --kubernetes "
                                            "(the NodeState resource is the desired state)")])
        stop, args.node_state = kube_bridge.start(
            args, _status_path(args), on_change=lambda: _wake(agents))
    try:
        agents.append(agent_from_args(args))
        return int(agents[0].run())
    finally:
        if stop is not None:
            stop.set()


def _wake(agents: list[Any]) -> None:
    for a in agents:
        a.trigger.set()


def cmd_status(args: argparse.Namespace) -> int:
    from flatroute import speaker_status as status

    try:
        st = status.read(_status_path(args))
    except status.StatusError as exc:
        raise AdapterError(str(exc)) from exc
    h = status.health(st)
    if args.probe:
        sys.stdout.write(h.words + "\n")
        passed = h.code in ((status.HEALTHY, status.DEGRADED, status.DOWN)
                            if args.probe == "live" else (status.HEALTHY, status.DEGRADED))
        return 0 if passed else h.code
    if args.json:
        sys.stdout.write(st.to_json())
    else:
        sys.stdout.write(status.render_text(st) + f"health: {h.words}\n")
    return h.code


def cmd_probe(args: argparse.Namespace) -> int:
    import json

    from speaker import capabilities

    caps = capabilities.probe()
    if args.json:
        sys.stdout.write(json.dumps(caps.to_doc(), indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write(capabilities.render_text(caps) + "\n")
    return 0 if caps.kernel_srv6 or caps.bpf_srv6 else 1


def cmd_end_sid(args: argparse.Namespace) -> int:
    from speaker.endsid import program_end_sid, remove_end_sid

    if args.remove:
        remove_end_sid(args.bpf_dir)
        print(f"removed the eBPF End SID datapath pinned in {args.bpf_dir}")
        return 0
    devices = program_end_sid(args.bpf_dir, args.sid, args.locator)
    print(f"End SID {args.sid} on the eBPF datapath, at tc ingress of {', '.join(devices)}")
    return 0


def _poke(run_dir: str) -> None:
    """Ask a running speaker for a reconcile pass now (SIGHUP), if it is running."""
    try:
        with open(os.path.join(run_dir, "speaker.pid"), encoding="ascii") as fh:
            pid = int(fh.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            if b"speaker" not in fh.read():
                return
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError):
        pass


def cmd_drain(args: argparse.Namespace) -> int:
    from flatroute import speaker_status as status

    flag = os.path.join(args.run_dir, "drain")
    if args.undo:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(flag)
    else:
        os.makedirs(args.run_dir, exist_ok=True)
        with open(flag, "w", encoding="utf-8") as fh:
            fh.write(f"drained at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n")
    _poke(args.run_dir)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        try:
            st = status.read(_status_path(args))
        except status.StatusError:
            st = None
        if st is not None and st.drained == (not args.undo) \
                and (bool(st.announced) == args.undo):
            print("drained: every announcement withdrawn" if not args.undo
                  else "undrained: announcing again")
            return 0
        time.sleep(0.2)
    raise AdapterError(f"the speaker did not confirm within {args.timeout:g} s (the drain flag "
                       f"{flag} is {'removed' if args.undo else 'set'}; is the speaker running?)")
