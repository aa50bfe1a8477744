"""An in-memory kernel behind the shared rtnetlink codec's socket (test support, not shipped).

`FakeKernel` is one network namespace: links, addresses, routes and neighbour entries, changed
and dumped through real rtnetlink messages (the bytes `cni.netlink` builds, answered with the
bytes the kernel sends), so the verbs and the codec run without root. `install` puts a node
and a pod namespace behind `cni.verbs`.
"""

from __future__ import annotations

import errno
from typing import Any

import pytest

import rtnetlink as rt
from cni import netlink as nl
from cni import verbs


class FakeKernel:
    next_index = 10  # shared by every namespace, like ifindexes need not be

    def __init__(self) -> None:
        self.links: dict[int, dict[str, Any]] = {}
        self.addrs: list[tuple[int, int, int, bytes]] = []  # family, prefixlen, index, addr
        self.routes: list[dict[str, Any]] = []
        self.neighs: list[tuple[int, bytes, bytes]] = []  # index, dst, lladdr
        self.peer: FakeKernel | None = None  # where a veth's peer goes
        self.fail: dict[int, int] = {}  # message type -> errno to refuse it with

    # -- state --------------------------------------------------------------------------------
    def add_link(self, name: str, kind: str = "", link: int = 0, mtu: int = 1500) -> int:
        FakeKernel.next_index += 1
        idx = FakeKernel.next_index
        self.links[idx] = {"name": name, "flags": 0, "mtu": mtu, "kind": kind, "link": link,
                           "mac": bytes([2, 0, 0, 0, idx >> 8 & 255, idx & 255])}
        return idx

    def by_name(self, name: str) -> int | None:
        return next((i for i, link in self.links.items() if link["name"] == name), None)

    def remove_link(self, idx: int) -> None:
        link = self.links.pop(idx)
        self.routes = [r for r in self.routes if r["oif"] != idx]
        self.addrs = [a for a in self.addrs if a[2] != idx]
        peer = link.get("peer")
        if peer is not None and peer[1] in peer[0].links:
            peer[0].remove_link(peer[1])

    # -- messages -----------------------------------------------------------------------------
    def handle(self, mtype: int, flags: int, seq: int, body: bytes, request: bytes) -> bytes:
        replies: list[tuple[int, bytes]] = []
        dump = mtype in (rt.RTM_GETLINK, rt.RTM_GETADDR, rt.RTM_GETROUTE) \
            and flags & rt.NLM_F_DUMP == rt.NLM_F_DUMP
        err = self.fail.get(mtype, 0)
        if not err:
            try:
                replies = self._dispatch(mtype, dump, body)
            except OSError as exc:
                err = exc.errno or errno.EINVAL
        out = b"".join(rt.message(t, rt.NLM_F_MULTI if dump else 0, seq, b)
                       for t, b in replies)
        if dump and not err:
            return out + rt.message(rt.NLMSG_DONE, rt.NLM_F_MULTI, seq, b"\0\0\0\0")
        if err or flags & rt.NLM_F_ACK:
            out += rt.error_message(seq, err, request, "refused by the fake" if err else "")
        return out

    def _dispatch(self, mtype: int, dump: bool, body: bytes) -> list[tuple[int, bytes]]:
        if mtype == rt.RTM_NEWLINK:
            return self._newlink(body)
        if mtype in (rt.RTM_GETLINK, rt.RTM_DELLINK):
            return self._link_op(mtype, dump, body)
        if mtype == rt.RTM_NEWADDR:
            fam, plen, _f, _s, idx = rt.IFADDRMSG.unpack_from(body)
            self.addrs.append((fam, plen, idx, rt.parse_attrs(body, 8)[rt.IFA_LOCAL]))
            return []
        if mtype == rt.RTM_GETADDR:
            return [(rt.RTM_NEWADDR, rt.ifaddrmsg(f, p, i) + rt.attr(rt.IFA_LOCAL, a))
                    for f, p, i, a in self.addrs if f == body[0]]
        if mtype == rt.RTM_NEWNEIGH:
            a = rt.parse_attrs(body, rt.NDMSG.size)
            self.neighs.append((rt.NDMSG.unpack_from(body)[1], a[rt.NDA_DST], a[rt.NDA_LLADDR]))
            return []
        return self._route_op(mtype, body)

    def _newlink(self, body: bytes) -> list[tuple[int, bytes]]:
        _f, _t, idx, flags, change = rt.IFINFOMSG.unpack_from(body)
        a = rt.parse_attrs(body, rt.IFINFOMSG.size)
        if rt.IFLA_LINKINFO not in a:
            if idx not in self.links:
                raise OSError(errno.ENODEV, "no such link")
            link = self.links[idx]
            link["flags"] = (link["flags"] & ~change) | (flags & change)
            return []
        name = rt.cstr(a[rt.IFLA_IFNAME])
        info = rt.parse_attrs(a[rt.IFLA_LINKINFO])
        peer_info = rt.parse_attrs(info[rt.IFLA_INFO_DATA])[rt.VETH_INFO_PEER]
        pa = rt.parse_attrs(peer_info, rt.IFINFOMSG.size)
        peer_name, peer_ns = rt.cstr(pa[rt.IFLA_IFNAME]), self.peer or self
        if self.by_name(name) is not None or peer_ns.by_name(peer_name) is not None:
            raise OSError(errno.EEXIST, "exists")
        mtu = rt.u32(a.get(rt.IFLA_MTU), 1500)
        pidx = peer_ns.add_link(peer_name, "veth", mtu=mtu)
        hidx = self.add_link(name, "veth", pidx, mtu)
        self.links[hidx]["peer"] = (peer_ns, pidx)
        peer_ns.links[pidx]["peer"] = (self, hidx)
        return []

    def _link_msg(self, idx: int) -> tuple[int, bytes]:
        link = self.links[idx]
        return rt.RTM_NEWLINK, rt.ifinfomsg(idx, link["flags"]) \
            + rt.attr_str(rt.IFLA_IFNAME, link["name"]) + rt.attr_u32(rt.IFLA_MTU, link["mtu"]) \
            + rt.attr_u32(rt.IFLA_LINK, link["link"]) + rt.attr(rt.IFLA_ADDRESS, link["mac"]) \
            + rt.nested(rt.IFLA_LINKINFO, rt.attr_str(rt.IFLA_INFO_KIND, link["kind"]))

    def _link_op(self, mtype: int, dump: bool, body: bytes) -> list[tuple[int, bytes]]:
        if dump:
            return [self._link_msg(i) for i in sorted(self.links)]
        idx = rt.IFINFOMSG.unpack_from(body)[2]
        name = rt.parse_attrs(body, rt.IFINFOMSG.size).get(rt.IFLA_IFNAME)
        found = self.by_name(rt.cstr(name)) if name else (idx if idx in self.links else None)
        if found is None:
            raise OSError(errno.ENODEV, "no such link")
        if mtype == rt.RTM_DELLINK:
            self.remove_link(found)
            return []
        return [self._link_msg(found)]

    def _route_op(self, mtype: int, body: bytes) -> list[tuple[int, bytes]]:
        fam, dst_len, _s, _t, table, proto, _sc, _ty, _fl = rt.RTMSG.unpack_from(body)
        if mtype == rt.RTM_GETROUTE:
            return [(rt.RTM_NEWROUTE, self._route_msg(r)) for r in self.routes
                    if r["family"] == fam]
        a = rt.parse_attrs(body, rt.RTMSG.size)
        route = {"family": fam, "dst_len": dst_len, "table": table, "protocol": proto,
                 "dst": a.get(rt.RTA_DST, bytes(4 if fam == rt.AF_INET else 16)),
                 "oif": rt.u32(a.get(rt.RTA_OIF)), "gateway": a.get(rt.RTA_GATEWAY)}
        key = ("family", "dst", "dst_len", "table")
        same = [r for r in self.routes if all(r[k] == route[k] for k in key)]
        if mtype == rt.RTM_DELROUTE:
            gone = [r for r in same if r["protocol"] == proto and r["oif"] == route["oif"]]
            if not gone:
                raise OSError(errno.ESRCH, "no such route")
            self.routes.remove(gone[0])
            return []
        if route["oif"] not in self.links:
            raise OSError(errno.ENODEV, "no such link")
        for r in same:
            self.routes.remove(r)
        self.routes.append(route)
        return []

    @staticmethod
    def _route_msg(r: dict[str, Any]) -> bytes:
        body = rt.rtmsg(r["family"], r["dst_len"], r["protocol"], 0, table=r["table"]) \
            + rt.attr(rt.RTA_DST, r["dst"]) + rt.attr_u32(rt.RTA_OIF, r["oif"])
        return body + (rt.attr(rt.RTA_GATEWAY, r["gateway"]) if r["gateway"] else b"")


class FakeSocket:
    """The socket `rtnetlink.Socket` talks to: every send answered at once."""

    def __init__(self, kernel: FakeKernel) -> None:
        self.kernel = kernel
        self.queue: list[bytes] = []
        self.sent = 0

    def sendall(self, data: bytes) -> None:
        self.sent += 1
        for off, n, mtype, flags, seq in rt.messages(data):
            self.queue.append(self.kernel.handle(mtype, flags, seq, data[off + 16:off + n],
                                                 data[off:off + n]))

    def recv(self, _size: int) -> bytes:
        return self.queue.pop(0)

    def close(self) -> None:
        pass


def install(monkeypatch: pytest.MonkeyPatch) -> tuple[FakeKernel, FakeKernel, dict[str, str]]:
    """A node and a pod namespace behind cni.verbs; returns them and the sysctls written."""
    node, pod = FakeKernel(), FakeKernel()
    node.peer = pod
    node.add_link("lo")
    pod.add_link("lo")
    sysctls: dict[str, str] = {}
    monkeypatch.setattr(verbs, "host_netlink", lambda: nl.Netlink(sock=FakeSocket(node)))
    # the pod namespace is whatever node.peer is now: a test may swap in another pod
    monkeypatch.setattr(verbs, "netns_netlink",
                        lambda _fd, _path: nl.Netlink(sock=FakeSocket(node.peer or pod)))
    monkeypatch.setattr(verbs, "write_sysctl", sysctls.__setitem__)
    return node, pod, sysctls
