"""Render ExaBGP's configuration, its environment file and its API commands (pure text).

One neighbor per PeerSpec. The announcements current at start-up are rendered as `static`
routes, so after a restart ExaBGP sends them *before* its End-of-RIB and a graceful-restart
helper (the ToR) refreshes its stale copy instead of withdrawing it. Every later change goes
through the process API (`announce`/`withdraw`), never a reload, so no session is reset.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from flatroute.errors import InvalidInput, field_error
from flatroute.nodestate import NodeState, PeerSpec
from flatroute.plan.model import Family
from speaker.announce import Announcement, peer_key

PROCESS = "flatroute"


@dataclass(frozen=True, slots=True)
class Paths:
    """Everything ExaBGP writes, inside the speaker's run directory."""

    run_dir: str
    pipename: str

    @property
    def config(self) -> str:
        return f"{self.run_dir}/exabgp.conf"

    @property
    def env(self) -> str:
        return f"{self.run_dir}/exabgp.env"

    @property
    def pid(self) -> str:
        return f"{self.run_dir}/exabgp.pid"

    @property
    def log(self) -> str:
        return f"{self.run_dir}/exabgp.log"

    @property
    def api_socket(self) -> str:
        return f"{self.run_dir}/exabgp-api.sock"


def render_env(paths: Paths) -> str:
    # Read by ConfigParser: no inline comments. cli=false: we use the process API only, so no
    # named pipes anywhere global; the pipename is unique anyway.
    return "\n".join([
        "[exabgp.api]",
        "ack = true",
        "encoder = json",
        "cli = false",
        f"pipename = '{paths.pipename}'",
        "respawn = true",
        "terminate = false",
        "",
        "[exabgp.daemon]",
        "daemonize = false",
        "drop = false",
        "user = 'root'",
        f"pid = '{paths.pid}'",
        "",
        "[exabgp.log]",
        f"destination = '{paths.log}'",
        "level = INFO",
        "",
    ])


def _quote(value: str, where: str) -> str:
    if any(c in value for c in "\"'\n\r;{}") or not value.strip():
        raise InvalidInput([field_error(where, "", "MD5 password must be non-empty and hold no "
                                        "quotes, semicolons, braces or line breaks")])
    return f'"{value}"'


def _families(peer: PeerSpec) -> list[str]:
    return [f"{f.value} unicast" for f in peer.families]


def is_rfc8950(peer: PeerSpec) -> bool:
    return peer.address is not None and peer.address.version == 6 \
        and Family.IPV4 in peer.families


def route_line(a: Announcement) -> str:
    """The route text shared by config `static` entries and API commands."""
    comm = f" community [{' '.join(a.communities)}]" if a.communities else ""
    return f"route {a.prefix} next-hop {a.next_hop}{comm}"


def render_config(state: NodeState, process_cmd: Sequence[str], *,
                  md5_password: str | None = None, md5_source: str = "bgp.md5.file",
                  static: Iterable[Announcement] = ()) -> str:
    by_peer: dict[str, list[Announcement]] = {}
    for a in sorted(static):
        by_peer.setdefault(a.peer, []).append(a)
    out = [
        f"process {PROCESS} {{",
        f"\trun {' '.join(process_cmd)};",
        "\tencoder json;",
        "}",
        "",
    ]
    for peer in state.peers:
        key = peer_key(peer)
        caps = [f"graceful-restart {state.bgp.graceful_restart};"
                if state.bgp.graceful_restart else "graceful-restart disable;",
                # a ToR may ask for our routes again (`clear bgp ... soft in`): ExaBGP
                # answers from its adj-rib-out, which this turns on
                "route-refresh enable;"]
        if is_rfc8950(peer):
            caps.append("nexthop enable;")
        out += [
            f"neighbor {key} {{",
            f"\tdescription \"{peer.name}\";",
            f"\trouter-id {state.router_id};",
        ]
        if peer.local_address is not None:
            out.append(f"\tlocal-address {peer.local_address};")
        if peer.interface is not None:  # link-local peer: the kernel needs the link named
            out.append(f"\tsource-interface {peer.interface};")
        out += [
            f"\tlocal-as {state.asn};",
            f"\tpeer-as {peer.asn};",
            f"\thold-time {state.bgp.hold_time};",
            "\tgroup-updates true;",
        ]
        if md5_password is not None:
            out.append(f"\tmd5-password {_quote(md5_password, md5_source)};")
        out.append("\tcapability {")
        out += [f"\t\t{c}" for c in caps]
        out.append("\t}")
        out.append("\tfamily {")
        out += [f"\t\t{f};" for f in _families(peer)]
        out.append("\t}")
        if is_rfc8950(peer):
            out += ["\tnexthop {", "\t\tipv4 unicast ipv6;", "\t}"]
        out += [
            "\tapi {",
            f"\t\tprocesses [ {PROCESS} ];",
            "\t\treceive { parsed; update; }",
            "\t\tneighbor-changes;",
            "\t}",
        ]
        routes = by_peer.get(key, [])
        if routes:
            out.append("\tstatic {")
            out += [f"\t\t{route_line(a)};" for a in routes]
            out.append("\t}")
        out += ["}", ""]
    return "\n".join(out)


def announce_command(a: Announcement) -> str:
    return f"neighbor {a.peer} announce {route_line(a)}"


def withdraw_command(a: Announcement) -> str:
    return f"neighbor {a.peer} withdraw {route_line(a)}"
