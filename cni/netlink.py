"""The plugin's rtnetlink layer: links, veth pairs, addresses, neighbours and host routes.

Messages are built and parsed by the one codec, `rtnetlink` (stdlib only, also the
speaker's). The plugin is exec'd once per pod, so start-up is the budget: `import pyroute2`
alone costs ~350 ms, `import socket` a few ms more. Each step's messages go in one batch and
every ACK is read. `setns(2)` comes through `_ctypes` (Python 3.11 has no `os.setns`), imported
only when needed.

Only what the plugin needs: veth pairs (peer created straight in the pod netns), link up/down,
addresses, routes, and dumps of links, addresses and routes for CHECK and GC.
"""

from __future__ import annotations

import os

import rtnetlink as rt
from rtnetlink import AF_INET, AF_INET6, IFF_UP, NetlinkError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: `import typing` costs ~20 ms of start-up
if TYPE_CHECKING:
    from typing import Any

__all__ = ["AF_INET", "AF_INET6", "IFF_UP", "Addr", "Link", "Netlink", "NetlinkError", "Route"]

CLONE_NEWNET = 0x40000000
ENODEV = 19



class Netlink:
    """One NETLINK_ROUTE socket, bound to the netns current at creation."""

    def __init__(self, sock: Any = None) -> None:
        self.rt = rt.Socket(sock=sock)

    def close(self) -> None:
        self.rt.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def batch(self, requests: list[tuple[int, int, bytes, str]],
              tolerate: tuple[int, ...] = ()) -> list[list[tuple[int, bytes]]]:
        """Send requests (type, flags, body, what) at once; each gets NLM_F_ACK.

        Returns, per request, the data messages answering it. Raises NetlinkError for the first
        request the kernel refused, unless its errno is in `tolerate`. The kernel still runs the
        requests after a failed one: callers undo whole steps, not single messages.
        """
        answers = self.rt.transact([r[:3] for r in requests])
        for req, answer in zip(requests, answers, strict=True):
            if answer.errno and answer.errno not in tolerate:
                raise NetlinkError(answer.errno, req[3], answer.ext)
        return [a.messages for a in answers]

    def dump(self, mtype: int, body: bytes) -> list[bytes]:
        return self.rt.dump(mtype, body)


# --- requests ----------------------------------------------------------------------------------

def req_veth(host: str, peer: str, peer_netns_fd: int, mtu: int) -> tuple[int, int, bytes, str]:
    peer_info = rt.ifinfomsg() + rt.attr_str(rt.IFLA_IFNAME, peer) \
        + rt.attr_u32(rt.IFLA_NET_NS_FD, peer_netns_fd) + rt.attr_u32(rt.IFLA_MTU, mtu)
    linkinfo = rt.nested(rt.IFLA_LINKINFO, rt.attr_str(rt.IFLA_INFO_KIND, "veth"),
                         rt.nested(rt.IFLA_INFO_DATA, rt.attr(rt.VETH_INFO_PEER, peer_info)))
    body = rt.ifinfomsg() + rt.attr_str(rt.IFLA_IFNAME, host) + rt.attr_u32(rt.IFLA_MTU, mtu) \
        + linkinfo
    return rt.RTM_NEWLINK, rt.NLM_F_CREATE | rt.NLM_F_EXCL, body, f"create veth {host}"


def _link_body(name: str, index: int) -> bytes:
    return rt.ifinfomsg(index=index) + (rt.attr_str(rt.IFLA_IFNAME, name) if name else b"")


def req_getlink(name: str = "", index: int = 0) -> tuple[int, int, bytes, str]:
    return rt.RTM_GETLINK, 0, _link_body(name, index), f"get link {name or index}"


def req_dellink(name: str = "", index: int = 0) -> tuple[int, int, bytes, str]:
    return rt.RTM_DELLINK, 0, _link_body(name, index), f"delete link {name or index}"


def req_linkup(index: int) -> tuple[int, int, bytes, str]:
    body = rt.ifinfomsg(index=index, flags=IFF_UP, change=IFF_UP)
    return rt.RTM_NEWLINK, 0, body, f"set link {index} up"


def req_addr(family: int, addr: bytes, prefixlen: int, index: int,
             nodad: bool = True) -> tuple[int, int, bytes, str]:
    flags = rt.IFA_F_NODAD if nodad and family == AF_INET6 else 0
    link_local = family == AF_INET6 and addr[:2] == b"\xfe\x80"
    scope = rt.RT_SCOPE_LINK if link_local else rt.RT_SCOPE_UNIVERSE
    body = rt.ifaddrmsg(family, prefixlen, index, flags, scope) \
        + rt.attr(rt.IFA_LOCAL, addr) + rt.attr(rt.IFA_ADDRESS, addr)
    if flags:
        body += rt.attr_u32(rt.IFA_FLAGS, flags)
    return rt.RTM_NEWADDR, rt.NLM_F_CREATE | rt.NLM_F_REPLACE, body, \
        f"add address to link {index}"


def req_route(family: int, dst: bytes, dst_len: int, oif: int, protocol: int,
              gateway: bytes | None = None, onlink: bool = False,
              delete: bool = False) -> tuple[int, int, bytes, str]:
    scope = rt.RT_SCOPE_UNIVERSE if gateway is not None or family == AF_INET6 \
        else rt.RT_SCOPE_LINK
    body = rt.rtmsg(family, dst_len, protocol, scope, flags=rt.RTNH_F_ONLINK if onlink else 0)
    if dst_len:
        body += rt.attr(rt.RTA_DST, dst)
    body += rt.attr_u32(rt.RTA_OIF, oif)
    if gateway is not None:
        body += rt.attr(rt.RTA_GATEWAY, gateway)
    if delete:
        return rt.RTM_DELROUTE, 0, body, "delete route"
    return rt.RTM_NEWROUTE, rt.NLM_F_CREATE | rt.NLM_F_REPLACE, body, "add route"


def req_neigh(family: int, dst: bytes, lladdr: bytes, index: int
              ) -> tuple[int, int, bytes, str]:
    """A permanent neighbour entry (`ip neigh replace DST lladdr MAC nud permanent`)."""
    body = rt.ndmsg(family, index, rt.NUD_PERMANENT) + rt.attr(rt.NDA_DST, dst) \
        + rt.attr(rt.NDA_LLADDR, lladdr)
    return rt.RTM_NEWNEIGH, rt.NLM_F_CREATE | rt.NLM_F_REPLACE, body, \
        f"add neighbour on link {index}"


# --- parsed views ------------------------------------------------------------------------------

class Link:
    __slots__ = ("attrs", "flags", "index", "kind", "link", "mac", "mtu", "name")

    def __init__(self, body: bytes) -> None:
        _family, _type, self.index, self.flags, _change = rt.IFINFOMSG.unpack_from(body)
        self.attrs = rt.parse_attrs(body, rt.IFINFOMSG.size)
        self.name = rt.cstr(self.attrs.get(rt.IFLA_IFNAME, b""))
        self.mtu = rt.u32(self.attrs.get(rt.IFLA_MTU))
        self.link = rt.u32(self.attrs.get(rt.IFLA_LINK))
        self.mac = ":".join(f"{b:02x}" for b in self.attrs.get(rt.IFLA_ADDRESS, b""))
        info = rt.parse_attrs(self.attrs.get(rt.IFLA_LINKINFO, b""))
        self.kind = rt.cstr(info.get(rt.IFLA_INFO_KIND, b""))


class Route:
    __slots__ = ("dst", "dst_len", "family", "gateway", "oif", "protocol", "table")

    def __init__(self, body: bytes) -> None:
        self.family, self.dst_len, _src, _tos, table, self.protocol, _scope, _type, _flags = \
            rt.RTMSG.unpack_from(body)
        a = rt.parse_attrs(body, rt.RTMSG.size)
        self.table = rt.u32(a.get(rt.RTA_TABLE), table)
        self.dst = a.get(rt.RTA_DST, bytes(4 if self.family == AF_INET else 16))
        self.oif = rt.u32(a.get(rt.RTA_OIF))
        self.gateway = a.get(rt.RTA_GATEWAY)


class Addr:
    __slots__ = ("addr", "family", "index", "prefixlen")

    def __init__(self, body: bytes) -> None:
        self.family, self.prefixlen, _flags, _scope, self.index = rt.IFADDRMSG.unpack_from(body)
        a = rt.parse_attrs(body, rt.IFADDRMSG.size)
        self.addr = a.get(rt.IFA_LOCAL) or a.get(rt.IFA_ADDRESS) or b""


def get_link(nl: Netlink, name: str = "", index: int = 0) -> Link | None:
    try:
        msgs = nl.batch([req_getlink(name, index)])[0]
    except NetlinkError as exc:
        if exc.errno == ENODEV:
            return None
        raise
    return Link(msgs[0][1]) if msgs else None


def links(nl: Netlink) -> list[Link]:
    return [Link(b) for b in nl.dump(rt.RTM_GETLINK, rt.ifinfomsg())]


def routes(nl: Netlink, family: int) -> list[Route]:
    return [Route(b) for b in nl.dump(rt.RTM_GETROUTE, rt.rtmsg(family, 0, 0, 0, 0, 0))]


def addrs(nl: Netlink, family: int) -> list[Addr]:
    return [Addr(b) for b in nl.dump(rt.RTM_GETADDR, rt.ifaddrmsg(family, 0, 0))]


# --- namespaces --------------------------------------------------------------------------------

_setns: Any = None


def setns(fd: int) -> None:
    """Move this (single-threaded) process into the network namespace behind fd."""
    global _setns  # noqa: PLW0603 - built once per process, only when a netns is entered
    import _ctypes

    if _setns is None:
        class CInt(_ctypes._SimpleCData):  # type: ignore[type-arg]
            _type_ = "i"

        class Func(_ctypes.CFuncPtr):
            _flags_ = 1 | 8  # FUNCFLAG_CDECL | FUNCFLAG_USE_ERRNO
            _restype_ = CInt

        libc = _ctypes.dlopen(None, 2)  # type: ignore[arg-type]  # RTLD_NOW, the process itself
        _setns = Func(_ctypes.dlsym(libc, "setns"))
    if _setns(fd, CLONE_NEWNET) != 0:
        err = _ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")
