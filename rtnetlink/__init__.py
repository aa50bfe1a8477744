"""The one rtnetlink codec, on the standard library only: the speaker and the CNI plugin use it.

Bytes in, bytes out: netlink headers (nlmsghdr), the route, link, address and neighbour
headers (rtmsg, ifinfomsg, ifaddrmsg, ndmsg), attributes and nested attributes, multipath
next hops, RTA_VIA (an IPv4 route over an IPv6 next hop), seg6 encapsulation (the SRH) and
seg6local, NLMSG_ERROR (ACKs, errno, the extended ack's message); and `Socket`, one
NETLINK_ROUTE socket that sends many requests in one `send()` and checks every ACK, and dumps.

Typed values live above it: the speaker's `Route` layer (`speaker/rtnl.py`) and the CNI's
links, veths, addresses and host routes (`cni/netlink.py`). Addresses here are packed bytes.

The CNI plugin is exec'd once per pod and imports this on its hot path: only `_socket`,
`_struct` and `os` (no `socket`, `struct`, `typing`, `ipaddress`, `dataclasses`; see
tests/unit/cni, `test_hot_path_imports_stay_lean`).
"""

from __future__ import annotations

import _socket
import _struct
import os

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: `import typing` costs ~20 ms of start-up
if TYPE_CHECKING:
    from collections.abc import Iterator

# -- constants (linux/netlink.h, rtnetlink.h, if_link.h, if_addr.h, lwtunnel.h, seg6*.h) ------
AF_INET, AF_INET6 = 2, 10
NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK, NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK = 10, 11, 12

NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 0x1, 0x2, 0x4
NLM_F_DUMP = 0x300
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400
NLM_F_CAPPED, NLM_F_ACK_TLVS = 0x100, 0x200  # on NLMSG_ERROR
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLMSGERR_ATTR_MSG = 1

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWNEIGH = 28

IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK = 1, 3, 4, 5
IFLA_LINKINFO, IFLA_NET_NS_FD = 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VETH_INFO_PEER = 1
IFF_UP = 0x1

IFA_ADDRESS, IFA_LOCAL, IFA_FLAGS = 1, 2, 8
IFA_F_NODAD = 0x02

NDA_DST, NDA_LLADDR = 1, 2
NUD_PERMANENT = 0x80

RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_MULTIPATH = 1, 4, 5, 6, 9
RTA_TABLE, RTA_VIA, RTA_ENCAP_TYPE, RTA_ENCAP = 15, 18, 21, 22
RTN_UNICAST = 1
RTN_UNREACHABLE = 7
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RT_SCOPE_NOWHERE = 0, 253, 255
RT_TABLE_COMPAT, RT_TABLE_MAIN = 252, 254
RTNH_F_ONLINK = 0x4

LWTUNNEL_ENCAP_SEG6, LWTUNNEL_ENCAP_SEG6_LOCAL = 5, 7
SEG6_IPTUNNEL_SRH = 1
SEG6_LOCAL_ACTION, SEG6_LOCAL_TABLE, SEG6_LOCAL_NH4, SEG6_LOCAL_NH6 = 1, 3, 4, 5
SEG6_LOCAL_OIF, SEG6_LOCAL_VRFTABLE = 7, 9

NLMSGHDR = _struct.Struct("=IHHII")  # len, type, flags, seq, pid
RTMSG = _struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, proto, scope, type,
#                                       flags
IFINFOMSG = _struct.Struct("=BxHiII")  # family, type, index, flags, change
IFADDRMSG = _struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
NDMSG = _struct.Struct("=BxxxiHBB")  # family, ifindex, state, flags, type
RTATTR = _struct.Struct("=HH")  # len, type
RTNEXTHOP = _struct.Struct("=HBBi")  # len, flags, hops, ifindex
SRH = _struct.Struct("=iBBBBBBH")  # seg6 mode, then ipv6_sr_hdr up to its tag
U16 = _struct.Struct("=H")
U32 = _struct.Struct("=I")
I32 = _struct.Struct("=i")


class NetlinkError(OSError):
    """The kernel refused a request; the errno, what was asked and the extended ack's text."""

    def __init__(self, errno: int, what: str, ext: str = "") -> None:
        self.what = what
        self.ext = ext
        detail = f"{what}: {os.strerror(errno)}"
        if ext:
            detail += f" ({ext})"
        super().__init__(errno, detail)


def align(n: int) -> int:
    return (n + 3) & ~3


# -- attributes ---------------------------------------------------------------------------------

def attr(kind: int, payload: bytes) -> bytes:
    n = 4 + len(payload)
    return RTATTR.pack(n, kind) + payload + b"\0" * (-n % 4)


def attr_str(kind: int, value: str) -> bytes:
    return attr(kind, value.encode() + b"\0")


def attr_u32(kind: int, value: int) -> bytes:
    return attr(kind, U32.pack(value))


def attr_i32(kind: int, value: int) -> bytes:
    return attr(kind, I32.pack(value))


def nested(kind: int, *attrs: bytes) -> bytes:
    return attr(kind, b"".join(attrs))


def iter_attrs(data: bytes, start: int = 0, end: int = -1) -> Iterator[tuple[int, bytes]]:
    """(type, payload) of each attribute in data[start:end]; stops at a malformed one."""
    if end < 0:
        end = len(data)
    while start + 4 <= end:
        n, kind = RTATTR.unpack_from(data, start)
        if n < 4:
            return
        yield kind & 0x3FFF, data[start + 4:start + n]
        start += align(n)


def parse_attrs(data: bytes, start: int = 0, end: int = -1) -> dict[int, bytes]:
    """The attributes of data[start:end] by type (the last one wins)."""
    return dict(iter_attrs(data, start, end))


def cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode(errors="replace")


def u16(raw: bytes | None, default: int = 0) -> int:
    return U16.unpack_from(raw)[0] if raw else default


def u32(raw: bytes | None, default: int = 0) -> int:
    return U32.unpack_from(raw)[0] if raw else default


def i32(raw: bytes | None, default: int = 0) -> int:
    return I32.unpack_from(raw)[0] if raw else default


# -- messages and headers -----------------------------------------------------------------------

def message(mtype: int, flags: int, seq: int, body: bytes) -> bytes:
    return NLMSGHDR.pack(16 + len(body), mtype, flags, seq, 0) + body


def messages(data: bytes) -> Iterator[tuple[int, int, int, int, int]]:
    """(offset, length, type, flags, seq) of each message of one recv(); the body is
    data[offset + 16:offset + length]."""
    off, end = 0, len(data)
    while off + 16 <= end:
        n, mtype, flags, seq, _pid = NLMSGHDR.unpack_from(data, off)
        if n < 16 or off + n > end:
            return
        yield off, n, mtype, flags, seq
        off += align(n)


def parse_error(data: bytes, off: int, length: int, flags: int) -> tuple[int, str]:
    """An NLMSG_ERROR at off: (errno, extended ack message); errno 0 is an ACK."""
    err = -I32.unpack_from(data, off + 16)[0]
    ext = ""
    if err and flags & NLM_F_ACK_TLVS:
        # The error echoes the request: its header only when capped (NETLINK_CAP_ACK).
        echoed = 16 if flags & NLM_F_CAPPED else NLMSGHDR.unpack_from(data, off + 20)[0]
        tlv = parse_attrs(data, off + 20 + align(echoed), off + length)
        ext = cstr(tlv.get(NLMSGERR_ATTR_MSG, b""))
    return err, ext


def error_message(seq: int, errno: int, request: bytes = b"", ext: str = "") -> bytes:
    """An NLMSG_ERROR as the kernel sends it (capped): for tests and fakes."""
    header = request[:16] if request else NLMSGHDR.pack(16, 0, 0, seq, 0)
    flags = NLM_F_CAPPED
    tail = b""
    if ext:
        flags |= NLM_F_ACK_TLVS
        tail = attr_str(NLMSGERR_ATTR_MSG, ext)
    return message(NLMSG_ERROR, flags, seq, I32.pack(-errno) + header + tail)


def rtmsg(family: int, dst_len: int, protocol: int, scope: int, rtype: int = RTN_UNICAST,
          table: int = RT_TABLE_MAIN, flags: int = 0) -> bytes:
    """struct rtmsg; a table above 255 needs an RTA_TABLE attribute besides (`table_attr`)."""
    return RTMSG.pack(family, dst_len, 0, 0, table if table < 256 else RT_TABLE_COMPAT,
                      protocol, scope, rtype, flags)


def table_attr(table: int) -> bytes:
    return attr_u32(RTA_TABLE, table) if table >= 256 else b""


def ifinfomsg(index: int = 0, flags: int = 0, change: int = 0, family: int = 0) -> bytes:
    return IFINFOMSG.pack(family, 0, index, flags, change)


def ifaddrmsg(family: int, prefixlen: int, index: int, flags: int = 0, scope: int = 0) -> bytes:
    return IFADDRMSG.pack(family, prefixlen, flags & 0xFF, scope, index)


def ndmsg(family: int, index: int, state: int, flags: int = 0, ntype: int = RTN_UNICAST) -> bytes:
    return NDMSG.pack(family, index, state, flags, ntype)


# -- route attributes: gateways, multipath, seg6 ------------------------------------------------

def gateway(dst_family: int, gw: bytes) -> bytes:
    """RTA_GATEWAY, or RTA_VIA for a next hop of the other family (RFC 8950)."""
    gw_family = AF_INET if len(gw) == 4 else AF_INET6
    if gw_family == dst_family:
        return attr(RTA_GATEWAY, gw)
    return attr(RTA_VIA, U16.pack(gw_family) + gw)


def parse_via(raw: bytes) -> bytes:
    """The address of an RTA_VIA (struct rtvia: family, then the address)."""
    return raw[2:6] if U16.unpack_from(raw)[0] == AF_INET else raw[2:18]


def next_hop(attrs: dict[int, bytes]) -> bytes | None:
    """The gateway of a route or of one multipath hop: RTA_GATEWAY or RTA_VIA."""
    gw = attrs.get(RTA_GATEWAY)
    if gw is None and RTA_VIA in attrs:
        return parse_via(attrs[RTA_VIA])
    return gw


def multipath(hops: list[tuple[int, bytes]], flags: int = 0) -> bytes:
    """RTA_MULTIPATH from (ifindex, the hop's attributes) pairs."""
    return attr(RTA_MULTIPATH, b"".join(
        RTNEXTHOP.pack(8 + len(inner), flags, 0, index) + inner for index, inner in hops))


def parse_multipath(raw: bytes) -> list[tuple[int, dict[int, bytes]]]:
    """(ifindex, attributes) of each struct rtnexthop of an RTA_MULTIPATH."""
    out: list[tuple[int, dict[int, bytes]]] = []
    pos = 0
    while pos + 8 <= len(raw):
        n, _flags, _hops, index = RTNEXTHOP.unpack_from(raw, pos)
        if n < 8:
            break
        out.append((index, parse_attrs(raw, pos + 8, pos + n)))
        pos += align(n)
    return out


def seg6_encap(mode: int, segments: list[bytes]) -> bytes:
    """RTA_ENCAP_TYPE + RTA_ENCAP for a seg6 route: struct seg6_iptunnel_encap (mode, then the
    SRH with its segments listed last-first). segments: packed IPv6 addresses, first first."""
    n = len(segments)
    if not 1 <= n <= 64:
        raise ValueError("a seg6 route needs 1 to 64 segments")
    srh = SRH.pack(mode, 0, 2 * n, 4, n - 1, n - 1, 0, 0) + b"".join(reversed(segments))
    return attr(RTA_ENCAP_TYPE, U16.pack(LWTUNNEL_ENCAP_SEG6)) \
        + nested(RTA_ENCAP, attr(SEG6_IPTUNNEL_SRH, srh))


def parse_seg6_encap(raw: bytes) -> tuple[int, list[bytes]] | None:
    """(mode, segments first first) of a seg6 RTA_ENCAP, or None without an SRH."""
    for kind, val in iter_attrs(raw):
        if kind == SEG6_IPTUNNEL_SRH and len(val) >= SRH.size:
            mode, _nh, _len, _type, _left, first, _flags, _tag = SRH.unpack_from(val)
            segs = [val[12 + 16 * i:28 + 16 * i] for i in range(first + 1)]
            return mode, segs[::-1]
    return None


def parse_seg6local(raw: bytes) -> dict[int, bytes]:
    """The attributes of a seg6local RTA_ENCAP (SEG6_LOCAL_ACTION, _TABLE, _NH4, ...)."""
    return parse_attrs(raw)


# -- the socket -----------------------------------------------------------------------------------

class Answer:
    """What the kernel said to one request: errno (0: done), the extended ack's text, and the
    data messages (type, body) that answered it."""

    __slots__ = ("errno", "ext", "messages")

    def __init__(self) -> None:
        self.errno = 0
        self.ext = ""
        self.messages: list[tuple[int, bytes]] = []


class Socket:
    """One NETLINK_ROUTE socket, bound in the network namespace current at creation.
    Not thread-safe: one per thread."""

    def __init__(self, *, strict: bool = False, bufsize: int = 1 << 16, sockbuf: int = 0,
                 sock: _socket.socket | None = None) -> None:
        self.bufsize = bufsize
        self.seq = 0
        if sock is not None:  # a test's recorded kernel
            self.sock = sock
            return
        self.sock = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC,
                                   NETLINK_ROUTE)
        if sockbuf:
            self.sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF, sockbuf)
            self.sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_SNDBUF, sockbuf)
        opts = (NETLINK_CAP_ACK, NETLINK_EXT_ACK) + ((NETLINK_GET_STRICT_CHK,) if strict else ())
        for opt in opts:
            try:  # noqa: SIM105 - contextlib costs the CNI plugin start-up time
                self.sock.setsockopt(SOL_NETLINK, opt, 1)
            except OSError:  # pragma: no cover - old kernels
                pass
        self.sock.bind((0, 0))

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Socket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def next_seq(self) -> int:
        self.seq = (self.seq + 1) & 0xFFFFFFFF or 1
        return self.seq

    def transact(self, requests: list[tuple[int, int, bytes]], ack_last_only: bool = False
                 ) -> list[Answer]:
        """Send the requests (type, flags, body) in one send() and read every answer.

        Each request asks for an ACK, or only the last one (`ack_last_only`): the kernel runs
        the messages of one send in order and reports every failure anyway, so the last ACK is
        a barrier after which every error has been read (one wait instead of one per request).
        The kernel goes on after a failed request: callers undo whole steps.
        """
        answers = [Answer() for _ in requests]
        index: dict[int, int] = {}
        acked: set[int] = set()
        parts = []
        last = len(requests) - 1
        for i, (mtype, flags, body) in enumerate(requests):
            seq = self.next_seq()
            index[seq] = i
            ack = NLM_F_ACK if i == last or not ack_last_only else 0
            if ack:
                acked.add(seq)
            parts.append(message(mtype, flags | NLM_F_REQUEST | ack, seq, body))
        if parts:
            self.sock.sendall(b"".join(parts))
        waiting = len(acked)
        while waiting:
            data = self.sock.recv(self.bufsize)
            for off, n, mtype, flags, seq in messages(data):
                i = index.get(seq, -1)
                if i < 0:
                    continue
                if mtype != NLMSG_ERROR:
                    answers[i].messages.append((mtype, data[off + 16:off + n]))
                    continue
                answers[i].errno, answers[i].ext = parse_error(data, off, n, flags)
                if seq in acked:
                    waiting -= 1
        return answers

    def dump(self, mtype: int, body: bytes, what: str = "dump") -> list[bytes]:
        """The bodies of every message a dump request answers with (NLM_F_DUMP)."""
        seq = self.next_seq()
        self.sock.sendall(message(mtype, NLM_F_REQUEST | NLM_F_DUMP, seq, body))
        out: list[bytes] = []
        while True:
            data = self.sock.recv(self.bufsize)
            for off, n, t, flags, s in messages(data):
                if s != seq:
                    continue
                if t == NLMSG_DONE:
                    return out
                if t == NLMSG_ERROR:
                    err, ext = parse_error(data, off, n, flags)
                    if err:
                        raise NetlinkError(err, what, ext)
                else:
                    out.append(data[off + 16:off + n])
