"""A minimal rtnetlink client on the standard library only.

The plugin is exec'd once per pod, so start-up is the budget: `import pyroute2` alone costs
~350 ms, `import struct` and `import socket` a few ms more. This module uses `_socket` and
`int.to_bytes` directly, sends each step's messages in one batch and reads the acks.
`setns(2)` comes through `_ctypes` (Python 3.11 has no `os.setns`), imported only when needed.

Only what the plugin needs: veth pairs (peer created straight in the pod netns), link up/down,
addresses, routes, and dumps of links and routes for CHECK and GC.
"""

from __future__ import annotations

import _socket
import os
import sys

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: `import typing` costs ~20 ms of start-up
if TYPE_CHECKING:
    from typing import Any

_BO: Any = sys.byteorder

AF_INET = 2
AF_INET6 = 10
NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11

NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_DUMP = 0x300
NLM_F_ACK_TLVS = 0x200
NLMSG_ERROR = 2
NLMSG_DONE = 3

RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_GETADDR = 22
RTM_NEWROUTE = 24
RTM_DELROUTE = 25
RTM_GETROUTE = 26
RTM_NEWNEIGH = 28
NDA_DST, NDA_LLADDR = 1, 2
NUD_PERMANENT = 0x80

IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_LINK = 5
IFLA_LINKINFO = 18
IFLA_NET_NS_FD = 28
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
VETH_INFO_PEER = 1
IFF_UP = 0x1

IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_FLAGS = 8
IFA_F_NODAD = 0x02

RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_TABLE = 15
RT_TABLE_MAIN = 254
RTN_UNICAST = 1
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RTNH_F_ONLINK = 0x4
NLMSGERR_ATTR_MSG = 1

CLONE_NEWNET = 0x40000000


class NetlinkError(OSError):
    """The kernel refused a request; errno and the extended ack message are kept."""

    def __init__(self, errno: int, what: str, ext: str = "") -> None:
        self.what = what
        self.ext = ext
        detail = f"{what}: {os.strerror(errno)}"
        if ext:
            detail += f" ({ext})"
        super().__init__(errno, detail)


# --- message building -----------------------------------------------------------------------

def _u16(v: int) -> bytes:
    return v.to_bytes(2, _BO)


def _u32(v: int) -> bytes:
    return v.to_bytes(4, _BO)


def attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return _u16(length) + _u16(kind) + payload + b"\0" * (-length % 4)


def attr_str(kind: int, value: str) -> bytes:
    return attr(kind, value.encode() + b"\0")


def ifinfomsg(index: int = 0, flags: int = 0, change: int = 0, family: int = 0) -> bytes:
    return bytes((family, 0)) + _u16(0) + index.to_bytes(4, _BO, signed=True) + _u32(flags) \
        + _u32(change)


def ifaddrmsg(family: int, prefixlen: int, index: int, flags: int = 0, scope: int = 0) -> bytes:
    return bytes((family, prefixlen, flags & 0xFF, scope)) + _u32(index)


def rtmsg(family: int, dst_len: int, protocol: int, scope: int, flags: int = 0,
          table: int = RT_TABLE_MAIN, rtype: int = RTN_UNICAST) -> bytes:
    return bytes((family, dst_len, 0, 0, table, protocol, scope, rtype)) + _u32(flags)


def parse_attrs(data: bytes | memoryview, offset: int = 0) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    end = len(data)
    while offset + 4 <= end:
        length = int.from_bytes(data[offset:offset + 2], _BO)
        kind = int.from_bytes(data[offset + 2:offset + 4], _BO) & 0x3FFF
        if length < 4:
            break
        out[kind] = bytes(data[offset + 4:offset + length])
        offset += (length + 3) & ~3
    return out


def _cstr(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode(errors="replace")


# --- sockets ----------------------------------------------------------------------------------

class Netlink:
    """One NETLINK_ROUTE socket, bound to the netns current at creation."""

    def __init__(self) -> None:
        self.sock = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC,
                                   NETLINK_ROUTE)
        try:
            self.sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
            self.sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        except OSError:  # pragma: no cover - old kernels
            pass
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _msg(self, mtype: int, flags: int, body: bytes) -> tuple[int, bytes]:
        self.seq += 1
        return self.seq, _u32(16 + len(body)) + _u16(mtype) + _u16(flags) + _u32(self.seq) \
            + _u32(0) + body

    def batch(self, requests: list[tuple[int, int, bytes, str]],
              tolerate: tuple[int, ...] = ()) -> list[list[tuple[int, bytes]]]:
        """Send requests (type, flags, body, what) at once; each gets NLM_F_ACK.

        Returns, per request, the data messages answering it. Raises NetlinkError for the first
        request the kernel refused, unless its errno is in `tolerate`. The kernel still runs the
        requests after a failed one: callers undo whole steps, not single messages.
        """
        seqs: dict[int, int] = {}
        out: list[list[tuple[int, bytes]]] = [[] for _ in requests]
        buf = bytearray()
        for i, (mtype, flags, body, _what) in enumerate(requests):
            seq, msg = self._msg(mtype, flags | NLM_F_REQUEST | NLM_F_ACK, body)
            seqs[seq] = i
            buf += msg
        self.sock.send(bytes(buf))
        pending = len(requests)
        first_error: NetlinkError | None = None
        while pending:
            data = self.sock.recv(1 << 16)
            off = 0
            while off + 16 <= len(data):
                length = int.from_bytes(data[off:off + 4], _BO)
                mtype = int.from_bytes(data[off + 4:off + 6], _BO)
                mflags = int.from_bytes(data[off + 6:off + 8], _BO)
                seq = int.from_bytes(data[off + 8:off + 12], _BO)
                idx = seqs.get(seq)
                if idx is not None:
                    if mtype == NLMSG_ERROR:
                        err = -int.from_bytes(data[off + 16:off + 20], _BO, signed=True)
                        pending -= 1
                        if err and err not in tolerate and first_error is None:
                            ext = ""
                            if mflags & NLM_F_ACK_TLVS:
                                # With NETLINK_CAP_ACK the error carries only the request header.
                                tlv = parse_attrs(data[off + 36:off + length])
                                ext = _cstr(tlv.get(NLMSGERR_ATTR_MSG, b""))
                            first_error = NetlinkError(err, requests[idx][3], ext)
                    else:
                        out[idx].append((mtype, bytes(data[off + 16:off + length])))
                off += (length + 3) & ~3
        if first_error is not None:
            raise first_error
        return out

    def dump(self, mtype: int, body: bytes) -> list[bytes]:
        seq, msg = self._msg(mtype, NLM_F_REQUEST | NLM_F_DUMP, body)
        self.sock.send(msg)
        out: list[bytes] = []
        while True:
            data = self.sock.recv(1 << 16)
            off = 0
            while off + 16 <= len(data):
                length = int.from_bytes(data[off:off + 4], _BO)
                t = int.from_bytes(data[off + 4:off + 6], _BO)
                s = int.from_bytes(data[off + 8:off + 12], _BO)
                if s == seq:
                    if t == NLMSG_DONE:
                        return out
                    if t == NLMSG_ERROR:
                        err = -int.from_bytes(data[off + 16:off + 20], _BO, signed=True)
                        if err:
                            raise NetlinkError(err, "dump")
                    else:
                        out.append(bytes(data[off + 16:off + length]))
                off += (length + 3) & ~3


# --- requests ----------------------------------------------------------------------------------

def req_veth(host: str, peer: str, peer_netns_fd: int, mtu: int) -> tuple[int, int, bytes, str]:
    peer_info = ifinfomsg() + attr_str(IFLA_IFNAME, peer) \
        + attr(IFLA_NET_NS_FD, _u32(peer_netns_fd)) + attr(IFLA_MTU, _u32(mtu))
    linkinfo = attr_str(IFLA_INFO_KIND, "veth") \
        + attr(IFLA_INFO_DATA, attr(VETH_INFO_PEER, peer_info))
    body = ifinfomsg() + attr_str(IFLA_IFNAME, host) + attr(IFLA_MTU, _u32(mtu)) \
        + attr(IFLA_LINKINFO, linkinfo)
    return RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body, f"create veth {host}"


def req_getlink(name: str = "", index: int = 0) -> tuple[int, int, bytes, str]:
    body = ifinfomsg(index=index) + (attr_str(IFLA_IFNAME, name) if name else b"")
    return RTM_GETLINK, 0, body, f"get link {name or index}"


def req_dellink(name: str = "", index: int = 0) -> tuple[int, int, bytes, str]:
    body = ifinfomsg(index=index) + (attr_str(IFLA_IFNAME, name) if name else b"")
    return RTM_DELLINK, 0, body, f"delete link {name or index}"


def req_linkup(index: int) -> tuple[int, int, bytes, str]:
    body = ifinfomsg(index=index, flags=IFF_UP, change=IFF_UP)
    return RTM_NEWLINK, 0, body, f"set link {index} up"


def req_addr(family: int, addr: bytes, prefixlen: int, index: int,
             nodad: bool = True) -> tuple[int, int, bytes, str]:
    flags = IFA_F_NODAD if nodad and family == AF_INET6 else 0
    scope = RT_SCOPE_LINK if family == AF_INET6 and addr[:2] == b"\xfe\x80" else RT_SCOPE_UNIVERSE
    body = ifaddrmsg(family, prefixlen, index, flags, scope) + attr(IFA_LOCAL, addr) \
        + attr(IFA_ADDRESS, addr)
    if flags:
        body += attr(IFA_FLAGS, _u32(flags))
    return RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, body, f"add address to link {index}"


def req_route(family: int, dst: bytes, dst_len: int, oif: int, protocol: int,
              gateway: bytes | None = None, onlink: bool = False,
              delete: bool = False) -> tuple[int, int, bytes, str]:
    scope = RT_SCOPE_UNIVERSE if gateway is not None or family == AF_INET6 else RT_SCOPE_LINK
    body = rtmsg(family, dst_len, protocol, scope, RTNH_F_ONLINK if onlink else 0)
    if dst_len:
        body += attr(RTA_DST, dst)
    body += attr(RTA_OIF, _u32(oif))
    if gateway is not None:
        body += attr(RTA_GATEWAY, gateway)
    if delete:
        return RTM_DELROUTE, 0, body, "delete route"
    return RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, body, "add route"


def req_neigh(family: int, dst: bytes, lladdr: bytes, index: int
              ) -> tuple[int, int, bytes, str]:
    """A permanent neighbour entry (`ip neigh replace DST lladdr MAC nud permanent`)."""
    # struct ndmsg: family, 3 pad bytes, ifindex, state, flags, type (RTN_UNICAST)
    body = bytes([family, 0, 0, 0]) + index.to_bytes(4, _BO, signed=True) \
        + NUD_PERMANENT.to_bytes(2, _BO) + bytes([0, 1]) \
        + attr(NDA_DST, dst) + attr(NDA_LLADDR, lladdr)
    return RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, body, f"add neighbour on link {index}"


# --- parsed views ------------------------------------------------------------------------------

class Link:
    __slots__ = ("attrs", "flags", "index", "kind", "link", "mac", "mtu", "name")

    def __init__(self, body: bytes) -> None:
        self.index = int.from_bytes(body[4:8], _BO, signed=True)
        self.flags = int.from_bytes(body[8:12], _BO)
        self.attrs = parse_attrs(body, 16)
        self.name = _cstr(self.attrs.get(IFLA_IFNAME, b""))
        self.mtu = int.from_bytes(self.attrs.get(IFLA_MTU, b"\0\0\0\0"), _BO)
        self.link = int.from_bytes(self.attrs.get(IFLA_LINK, b"\0\0\0\0"), _BO)
        self.mac = ":".join(f"{b:02x}" for b in self.attrs.get(IFLA_ADDRESS, b""))
        info = parse_attrs(self.attrs.get(IFLA_LINKINFO, b""))
        self.kind = _cstr(info.get(IFLA_INFO_KIND, b""))


class Route:
    __slots__ = ("dst", "dst_len", "family", "gateway", "oif", "protocol", "table")

    def __init__(self, body: bytes) -> None:
        self.family = body[0]
        self.dst_len = body[1]
        self.protocol = body[5]
        a = parse_attrs(body, 12)
        self.table = int.from_bytes(a[RTA_TABLE], _BO) if RTA_TABLE in a else body[4]
        self.dst = a.get(RTA_DST, bytes(4 if self.family == AF_INET else 16))
        self.oif = int.from_bytes(a.get(RTA_OIF, b"\0\0\0\0"), _BO)
        self.gateway = a.get(RTA_GATEWAY)


class Addr:
    __slots__ = ("addr", "family", "index", "prefixlen")

    def __init__(self, body: bytes) -> None:
        self.family = body[0]
        self.prefixlen = body[1]
        self.index = int.from_bytes(body[4:8], _BO)
        a = parse_attrs(body, 8)
        self.addr = a.get(IFA_LOCAL) or a.get(IFA_ADDRESS) or b""


def get_link(nl: Netlink, name: str = "", index: int = 0) -> Link | None:
    try:
        msgs = nl.batch([req_getlink(name, index)])[0]
    except NetlinkError as exc:
        if exc.errno in (19,):  # ENODEV
            return None
        raise
    return Link(msgs[0][1]) if msgs else None


def links(nl: Netlink) -> list[Link]:
    return [Link(b) for b in nl.dump(RTM_GETLINK, ifinfomsg())]


def routes(nl: Netlink, family: int) -> list[Route]:
    return [Route(b) for b in nl.dump(RTM_GETROUTE, rtmsg(family, 0, 0, 0, table=0, rtype=0))]


def addrs(nl: Netlink, family: int) -> list[Addr]:
    return [Addr(b) for b in nl.dump(RTM_GETADDR, ifaddrmsg(family, 0, 0))]


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
