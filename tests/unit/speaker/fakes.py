"""In-memory fakes of the speaker's adapters, for unit tests without root.

They live with the tests, not in `speaker/`: nothing in production imports them, and they are
not shipped in the wheel. Each one satisfies the Protocol the agent is typed against
(KernelAdapter, ExaBGPProcess, BfdAdapter, BpfAdapter, Ndisc, Clock) and records what it was
asked to do, so a test can assert that nothing at all was touched.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from ipaddress import IPv4Interface, IPv6Address, IPv6Interface
from typing import Any

from flatroute.nodestate import NodeState
from speaker import srv6_bpf
from speaker.bpf.maps import EncapEntry, LocatorEntry, SidEntry
from speaker.capabilities import BPF_NEEDS, KERNEL_NEEDS, Capabilities, Check
from speaker.exabgp_config import Paths
from speaker.exabgp_json import Event
from speaker.netlink import ApplyResult, Features
from speaker.routes import Route
from speaker.rtnl import Op


def capabilities(*, kernel: bool = True, bpf: bool = True, vrf: bool = True) -> Capabilities:
    checks = [Check(n, kernel, "" if kernel else "Operation not supported (errno 95)")
              for n in KERNEL_NEEDS]
    checks += [Check(n, bpf, "" if bpf else "not in BTF") for n in BPF_NEEDS]
    checks.append(Check("vrf", vrf, "" if vrf else "Operation not supported (errno 95)"))
    return Capabilities(tuple(checks), "6.18.44")


class FakeClock:
    def __init__(self, mono: float = 1000.0, wall: float = 1_700_000_000.0) -> None:
        self.mono, self.wall = mono, wall

    def monotonic(self) -> float:
        return self.mono

    def time(self) -> float:
        return self.wall

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


class FakeKernel:
    """Routes of ours by key; every write is recorded in `ops` (routes) or `writes` (rest)."""

    def __init__(self, caps: Capabilities | None = None, *, links_up: Iterable[str] = (),
                 link_locals: dict[str, IPv6Address] | None = None) -> None:
        self.routes: dict[object, Route] = {}
        self.ops: list[Op] = []
        self.writes: list[tuple[str, ...]] = []
        self.sysctls: dict[str, str] = {}
        self.feats = Features.from_caps(caps or capabilities())
        self.up = set(links_up)
        self.link_locals = dict(link_locals or {})
        self._tunsrc: IPv6Address | None = None
        #: interface -> addresses; interfaces that are up and not here have none
        self.addrs: dict[str, list[IPv4Interface | IPv6Interface]] = {}

    def list_owned(self) -> list[Route]:
        return list(self.routes.values())

    def apply(self, ops: Sequence[Op]) -> ApplyResult:
        res = ApplyResult()
        for op in ops:
            self.ops.append(op)
            if op.action == "delete":
                self.routes.pop(op.route.key, None)
            else:
                self.routes[op.route.key] = op.route
            res.applied += 1
        return res

    def link_up(self, name: str) -> bool:
        return name in self.up

    def ensure_up(self, name: str) -> None:
        self.writes.append(("up", name))
        self.up.add(name)

    def ensure_sid_device(self, name: str) -> None:
        self.writes.append(("sid_device", name))

    def features(self) -> Features:
        return self.feats

    def set_sysctl(self, key: str, value: str) -> str | None:
        self.writes.append(("sysctl", key, value))
        self.sysctls[key] = value
        return None

    def tunsrc(self) -> IPv6Address | None:
        return self._tunsrc

    def set_tunsrc(self, addr: IPv6Address) -> None:
        self.writes.append(("tunsrc", str(addr)))
        self._tunsrc = addr

    def link_local(self, name: str) -> IPv6Address | None:
        return self.link_locals.get(name)

    def addresses(self) -> dict[str, list[IPv4Interface | IPv6Interface]]:
        return {**{n: [] for n in self.up}, **self.addrs}

    def touched(self) -> int:
        return len(self.ops) + len(self.writes)


class FakeExaBGP:
    """The ExaBGP child: `config` is what it runs, `sent` what reached its API."""

    def __init__(self, paths: Paths, on_event: Callable[[Event], None],
                 log: Any = None,  # noqa: ARG002 - the factory's signature
                 *, connect: bool = True) -> None:
        self.paths = paths
        self.on_event = on_event
        self.connect = connect  # does a fresh process's API connect?
        self.starts = 0
        self.connected = threading.Event()
        self.last_exit: str | None = None
        self.running = False
        self.config: str | None = None
        self.sent: list[str] = []
        self.reloads: list[str] = []
        self.kills = 0
        self.refuse: set[str] = set()  # commands answered with `error`
        self.crashed: str | None = None  # set: it exits at every start, with this reason

    def alive(self) -> bool:
        return self.running

    def supervise(self, config: Callable[[], str], env: str) -> bool:  # noqa: ARG002
        if self.running:
            return False
        if self.crashed is not None:  # as if it started and exited at once (backing off)
            self.last_exit = self.crashed
            return False
        self.config = config()
        self.running = True
        self.starts += 1
        if self.connect:
            self.connected.set()
        return True

    def reload(self, config: str) -> None:
        self.config = config
        self.reloads.append(config)

    def kill(self) -> None:
        self.running = False
        self.connected.clear()
        self.kills += 1

    def close(self) -> None:
        self.kill()

    def send(self, commands: Sequence[str],
             timeout: float = 10.0) -> list[bool]:  # noqa: ARG002 - answers at once
        self.sent += commands
        return [c not in self.refuse for c in commands]

    def events(self) -> tuple[int, int, int, int]:
        """(starts, reloads, kills, commands sent): all equal = nothing changed."""
        return self.starts, len(self.reloads), self.kills, len(self.sent)

    def emit(self, event: Event) -> None:
        self.on_event(event)


class FakeBfdd:
    def __init__(self) -> None:
        self.pid: int | None = None
        self.error: str | None = None
        self.states: dict[str, str] = {}
        self.started: list[NodeState] = []
        self.on_change: Callable[[str, str], None] | None = None
        self.polls = 0

    def available(self) -> bool:
        return True

    def subscribe(self, on_change: Callable[[str, str], None]) -> None:
        self.on_change = on_change

    def event(self, peer: str, state: str) -> None:
        """bfdd's notification: the state changes and the agent hears of it at once."""
        self.states[peer] = state
        assert self.on_change is not None
        self.on_change(peer, state)

    def start(self, state: NodeState) -> None:
        self.pid = 4242
        self.started.append(state)

    def poll(self, peers: Iterable[str]) -> dict[str, str | None]:
        self.polls += 1
        return {p: self.states.get(p, "up") for p in peers}

    def stop(self) -> None:
        self.pid = None


class FakeNdisc:
    def __init__(self, routers: dict[str, IPv6Address] | None = None) -> None:
        self.routers = dict(routers or {})
        self.advertised: list[str] = []
        self.asked: list[str] = []

    def advertise(self, interface: str) -> bool:
        self.advertised.append(interface)
        return True

    def find_router(self, interface: str,
                    timeout: float = 1.0) -> IPv6Address | None:  # noqa: ARG002
        self.asked.append(interface)
        return self.routers.get(interface)


class FakeBpf:
    """Pinned maps and tc attachments of the eBPF datapath, in memory."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], srv6_bpf.Entry] = {}
        self.attachments: dict[str, str] = {}
        self.loaded = 0
        self.removed = 0

    def load(self) -> None:
        self.loaded += 1

    def attach(self, ifname: str, prog: str) -> bool:
        self.attachments[ifname] = prog
        return True

    def attached(self) -> dict[str, str]:
        return dict(self.attachments)

    def detach(self, ifname: str) -> None:
        self.attachments.pop(ifname, None)

    def list_encap(self) -> list[EncapEntry]:
        return [e for e in self.entries.values() if isinstance(e, EncapEntry)]

    def list_sids(self) -> list[SidEntry]:
        return [e for e in self.entries.values() if isinstance(e, SidEntry)]

    def list_locators(self) -> list[LocatorEntry]:
        return [e for e in self.entries.values() if isinstance(e, LocatorEntry)]

    def apply(self, *, put: Sequence[srv6_bpf.Entry] = (),
              delete: Sequence[srv6_bpf.Entry] = ()) -> list[tuple[object, str]]:
        for e in delete:
            self.entries.pop(srv6_bpf.key(e), None)
        for e in put:
            self.entries[srv6_bpf.key(e)] = e
        return []

    def counters(self) -> dict[str, int]:
        return {"no_sid": 0}

    def remove(self) -> None:
        self.removed += 1
        self.entries.clear()
        self.attachments.clear()
