"""The shared rtnetlink codec without root: headers, attributes, multipath, RTA_VIA, seg6,
ACKs and errors, and multipart dumps fed as recorded bytes."""

from __future__ import annotations

import errno
import struct

import pytest

import rtnetlink as rt

V6 = bytes.fromhex("fd000000000000000000000000000001")
LL = bytes.fromhex("fe800000000000000000000000000001")


class Recorded:
    """A socket that answers with datagrams recorded beforehand."""

    def __init__(self, *datagrams: bytes) -> None:
        self.datagrams = list(datagrams)
        self.sent: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.sent.append(data)

    def recv(self, _size: int) -> bytes:
        return self.datagrams.pop(0)

    def close(self) -> None:
        pass


def _sock(*datagrams: bytes) -> tuple[rt.Socket, Recorded]:
    rec = Recorded(*datagrams)
    return rt.Socket(sock=rec), rec  # type: ignore[arg-type]


def test_headers_pack_like_the_kernel_structs() -> None:
    assert rt.rtmsg(rt.AF_INET, 24, 70, rt.RT_SCOPE_LINK, table=1000) == struct.pack(
        "=BBBBBBBBI", 2, 24, 0, 0, 252, 70, 253, 1, 0)
    assert rt.table_attr(1000) == struct.pack("=HHI", 8, rt.RTA_TABLE, 1000)
    assert rt.table_attr(254) == b""
    assert rt.ifinfomsg(7, rt.IFF_UP, rt.IFF_UP) == struct.pack("=BxHiII", 0, 0, 7, 1, 1)
    assert rt.ifaddrmsg(10, 64, 3, 0x102, 253) == struct.pack("=BBBBI", 10, 64, 2, 253, 3)
    assert rt.ndmsg(2, 4, rt.NUD_PERMANENT) == struct.pack("=BxxxiHBB", 2, 4, 0x80, 0, 1)
    msg = rt.message(rt.RTM_NEWROUTE, 5, 9, b"abcd")
    assert list(rt.messages(msg + msg)) == [(0, 20, 24, 5, 9), (20, 20, 24, 5, 9)]
    assert list(rt.messages(msg[:19])) == []  # truncated


def test_attributes_nest_pad_and_parse() -> None:
    packed = rt.nested(1, rt.attr_str(3, "veth"), rt.attr_u32(4, 1500), rt.attr_i32(5, -1))
    assert len(packed) % 4 == 0
    outer = rt.parse_attrs(packed)
    inner = rt.parse_attrs(outer[1])
    assert rt.cstr(inner[3]) == "veth" and rt.u32(inner[4]) == 1500 and rt.i32(inner[5]) == -1
    assert rt.u32(None, 7) == 7 and rt.i32(None) == 0 and rt.u16(b"\x05\x00") == 5
    assert list(rt.iter_attrs(b"\x02\x00\x01\x00")) == []  # a length below 4 stops the walk
    assert rt.parse_attrs(rt.attr(0x8000 | 9, b"x"))[9] == b"x"  # the nested flag is dropped


def test_gateway_is_via_for_the_other_family_and_multipath_round_trips() -> None:
    v4 = bytes([10, 0, 0, 1])
    assert rt.gateway(rt.AF_INET, v4) == rt.attr(rt.RTA_GATEWAY, v4)
    via = rt.gateway(rt.AF_INET, LL)
    assert rt.next_hop(rt.parse_attrs(via)) == LL
    assert rt.parse_via(struct.pack("=H", rt.AF_INET) + v4) == v4
    mp = rt.multipath([(3, rt.gateway(rt.AF_INET, v4)), (4, via), (5, b"")])
    hops = rt.parse_multipath(rt.parse_attrs(mp)[rt.RTA_MULTIPATH])
    assert [(i, rt.next_hop(a)) for i, a in hops] == [(3, v4), (4, LL), (5, None)]
    assert rt.parse_multipath(b"\x04\x00\x00\x00\x00\x00\x00\x00") == []


def test_seg6_encap_lists_segments_last_first_and_parses_back() -> None:
    segs = [V6, LL]
    packed = rt.seg6_encap(3, segs)
    a = rt.parse_attrs(packed)
    assert rt.u16(a[rt.RTA_ENCAP_TYPE]) == rt.LWTUNNEL_ENCAP_SEG6
    srh = rt.parse_attrs(a[rt.RTA_ENCAP])[rt.SEG6_IPTUNNEL_SRH]
    assert srh[12:28] == LL and srh[28:44] == V6  # on the wire: last segment first
    assert rt.parse_seg6_encap(a[rt.RTA_ENCAP]) == (3, segs)
    assert rt.parse_seg6_encap(b"") is None
    with pytest.raises(ValueError, match="1 to 64"):
        rt.seg6_encap(1, [])
    local = rt.attr_u32(rt.SEG6_LOCAL_ACTION, 6) + rt.attr(rt.SEG6_LOCAL_NH4, bytes(4))
    assert rt.parse_seg6local(local) == {rt.SEG6_LOCAL_ACTION: rt.U32.pack(6),
                                         rt.SEG6_LOCAL_NH4: bytes(4)}


def test_errors_carry_errno_and_the_extended_ack() -> None:
    req = rt.message(rt.RTM_NEWROUTE, 5, 3, b"x" * 12)
    capped = rt.error_message(3, errno.EEXIST, req, "File exists here")
    (off, n, mtype, flags, seq), = rt.messages(capped)
    assert (mtype, seq) == (rt.NLMSG_ERROR, 3)
    assert rt.parse_error(capped, off, n, flags) == (errno.EEXIST, "File exists here")
    # not capped: the whole request is echoed before the TLVs
    body = rt.I32.pack(-errno.EPERM) + req + rt.attr_str(rt.NLMSGERR_ATTR_MSG, "nope")
    full = rt.message(rt.NLMSG_ERROR, rt.NLM_F_ACK_TLVS, 3, body)
    assert rt.parse_error(full, 0, len(full), rt.NLM_F_ACK_TLVS) == (errno.EPERM, "nope")
    ack = rt.error_message(3, 0)
    assert rt.parse_error(ack, 0, len(ack), 0) == (0, "")
    exc = rt.NetlinkError(errno.EPERM, "add route", "why")
    assert exc.errno == errno.EPERM and "add route" in str(exc) and "(why)" in str(exc)


def test_transact_reads_every_ack_and_the_data_that_answers() -> None:
    link = rt.ifinfomsg(7) + rt.attr_str(rt.IFLA_IFNAME, "eth0")
    sock, rec = _sock(
        rt.message(rt.RTM_NEWLINK, 0, 1, link) + rt.error_message(99, 0),  # a foreign seq
        rt.error_message(1, 0) + rt.error_message(2, errno.ENODEV, ext="gone"))
    answers = sock.transact([(rt.RTM_GETLINK, 0, rt.ifinfomsg(7)),
                             (rt.RTM_DELLINK, 0, rt.ifinfomsg(8))])
    assert [(a.errno, a.ext) for a in answers] == [(0, ""), (errno.ENODEV, "gone")]
    assert answers[0].messages == [(rt.RTM_NEWLINK, link)]
    flags = [f for _o, _n, _t, f, _s in rt.messages(rec.sent[0])]
    assert all(f & rt.NLM_F_ACK and f & rt.NLM_F_REQUEST for f in flags)
    assert sock.transact([]) == [] and len(rec.sent) == 1


def test_ack_last_only_still_reports_every_failure() -> None:
    sock, rec = _sock(rt.error_message(2, errno.EEXIST), rt.error_message(3, 0))
    answers = sock.transact([(rt.RTM_NEWROUTE, 0, b"")] * 3, ack_last_only=True)
    assert [a.errno for a in answers] == [0, errno.EEXIST, 0]
    flags = [f & rt.NLM_F_ACK for _o, _n, _t, f, _s in rt.messages(rec.sent[0])]
    assert flags == [0, 0, rt.NLM_F_ACK]


def test_sequence_numbers_wrap_and_skip_zero() -> None:
    sock, _rec = _sock()
    sock.seq = 0xFFFFFFFF
    assert sock.next_seq() == 1


def test_a_multipart_dump_spans_datagrams() -> None:
    routes = [rt.rtmsg(rt.AF_INET, 32, 70, 0) + rt.attr(rt.RTA_DST, bytes([10, 0, 0, i]))
              for i in range(3)]
    multi = [rt.message(rt.RTM_NEWROUTE, rt.NLM_F_MULTI, 1, r) for r in routes]
    sock, rec = _sock(multi[0] + multi[1], rt.message(rt.RTM_NEWROUTE, 0, 77, routes[0])
                      + multi[2] + rt.message(rt.NLMSG_DONE, rt.NLM_F_MULTI, 1, bytes(4)))
    assert sock.dump(rt.RTM_GETROUTE, rt.rtmsg(rt.AF_INET, 0, 0, 0, 0, 0)) == routes
    (_o, _n, mtype, flags, _s), = rt.messages(rec.sent[0])
    assert mtype == rt.RTM_GETROUTE and flags & rt.NLM_F_DUMP == rt.NLM_F_DUMP


def test_a_refused_dump_raises() -> None:
    sock, _rec = _sock(rt.error_message(1, errno.EINVAL, ext="bad header"))
    with pytest.raises(rt.NetlinkError) as exc:
        sock.dump(rt.RTM_GETROUTE, b"", "list routes")
    assert exc.value.errno == errno.EINVAL and exc.value.ext == "bad header"
    sock, _rec = _sock(rt.error_message(1, 0) + rt.message(rt.NLMSG_DONE, 0, 1, bytes(4)))
    assert sock.dump(rt.RTM_GETLINK, b"") == []


def test_the_socket_opens_binds_and_closes_without_root() -> None:
    with rt.Socket(strict=True, sockbuf=1 << 16) as sock:
        assert sock.sock.fileno() >= 0


def test_the_speakers_route_layer_over_recorded_answers() -> None:
    from ipaddress import ip_network

    from speaker.routes import Nexthop, Route
    from speaker.rtnl import Op, Rtnl, pack_route

    r1 = Route(ip_network("10.1.0.0/24"), (Nexthop("10.0.0.2", "up0"),))
    r2 = Route(ip_network("10.2.0.0/24"), (Nexthop("10.0.0.2", "up0"),))
    r3 = Route(ip_network("10.3.0.0/24"), (Nexthop("10.0.0.2", "gone0"),))
    with Rtnl(70) as kernel:
        kernel.rt.close()
        kernel.rt, _rec = _sock(rt.error_message(1, errno.EEXIST) + rt.error_message(2, 0),
                                rt.error_message(3, errno.ESRCH))
        failures = kernel.apply([Op("add", r1), Op("add", r2), Op("add", r3)], {"up0": 4})
        assert failures == [(r3, errno.ENODEV), (r1, errno.EEXIST)]
        assert kernel.apply([Op("delete", r1)], {"up0": 4}) == []  # already gone: fine
        ours = pack_route(Op("add", r1), 0, {"up0": 4}, 70)[16:]
        theirs = pack_route(Op("add", r2), 0, {"up0": 4}, 4)[16:]
        kernel.rt, _rec = _sock(  # a fresh socket: the IPv4 dump is seq 1, IPv6 seq 2
            rt.message(rt.RTM_NEWROUTE, 2, 1, ours) + rt.message(rt.RTM_NEWROUTE, 2, 1, theirs)
            + rt.message(rt.NLMSG_DONE, rt.NLM_F_MULTI, 1, bytes(4)),
            rt.message(rt.NLMSG_DONE, rt.NLM_F_MULTI, 2, bytes(4)))
        got = kernel.dump()
        assert [x.dst for x in got] == [r1.dst]
        with pytest.raises(ValueError, match="unknown route action"):
            pack_route(Op("move", r1), 0, {"up0": 4}, 70)
