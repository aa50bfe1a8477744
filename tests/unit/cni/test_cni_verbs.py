"""The verbs end to end without root: an in-memory kernel (fakekernel.py) behind the real
netlink messages, the fake store, and plain files for the pod netns."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest

import rtnetlink as rt
from cni import addr, errors, verbs
from cni.config import Env, NetConf, parse_conf
from cni.errors import CniError
from cni.fakestore import FakeStore
from flatroute import CNI_ROUTE_PROTOCOL, ROUTE_PROTOCOL
from tests.unit.cni.fakekernel import FakeKernel, install


def _env(tmp: Path, command: str = "ADD", cid: str = "c1") -> Env:
    netns = tmp / "netns"
    netns.write_text("")
    return Env(command, cid, "eth0", str(netns), ("/nonexistent",), "")


def _conf(tmp: Path, **extra: object) -> NetConf:
    doc = {"cniVersion": "1.1.0", "name": "n", "dataDir": str(tmp / "never-used"), "mtu": 1400,
           "ipam": {"ranges": [[{"subnet": "10.0.0.0/29"}], [{"subnet": "fd00::/125"}]]},
           **extra}
    return parse_conf(doc, b"")


def _add(tmp: Path, store: FakeStore, cid: str = "c1") -> dict[str, Any]:
    return verbs.cmd_add(_env(tmp, cid=cid), _conf(tmp), store=store)


def test_add_wires_both_ends_and_check_agrees(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    node, pod, sysctls = install(monkeypatch)
    store = FakeStore()
    result = _add(tmp_path, store)
    host = verbs.veth_name("c1", "eth0")
    assert [i["name"] for i in result["interfaces"]] == [host, "eth0"]
    assert result["interfaces"][0]["mtu"] == 1400
    assert [ip["address"] for ip in result["ips"]] == ["10.0.0.1/32", "fd00::1/128"]
    hidx = node.by_name(host)
    pidx = pod.by_name("eth0")
    assert hidx and pidx and node.links[hidx]["flags"] & rt.IFF_UP
    assert pod.links[pidx]["flags"] & rt.IFF_UP
    host_routes = {(r["dst"], r["protocol"], r["oif"]) for r in node.routes}
    assert host_routes == {(addr.packed(4, addr.parse_ip("10.0.0.1")[1]), CNI_ROUTE_PROTOCOL,
                            hidx),
                           (addr.packed(6, addr.parse_ip("fd00::1")[1]), CNI_ROUTE_PROTOCOL,
                            hidx)}
    assert {(r["dst_len"], r["gateway"]) for r in pod.routes} == {
        (0, bytes([169, 254, 1, 1])), (0, b"\xfe\x80" + bytes(13) + b"\x01")}
    assert pod.neighs == [(pidx, bytes([169, 254, 1, 1]), node.links[hidx]["mac"])]
    assert sysctls[f"/proc/sys/net/ipv4/conf/{host}/proxy_arp"] == "1"
    verbs.cmd_check(_env(tmp_path, "CHECK"), _conf(tmp_path, prevResult=result), store=store)

    pod.routes.clear()
    node.links[hidx]["flags"] = 0
    with pytest.raises(CniError) as exc:
        verbs.cmd_check(_env(tmp_path, "CHECK"), _conf(tmp_path, prevResult=result),
                        store=store)
    assert exc.value.code == errors.CHECK_FAILED
    for problem in (f"host veth {host}: down", "pod default route via 169.254.1.1",
                    "pod default route via fe80::1"):
        assert problem in exc.value.details


def test_check_finds_missing_pod_interface_and_host_routes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    node, pod, _ = install(monkeypatch)
    store = FakeStore()
    result = _add(tmp_path, store)
    node.routes.clear()
    pod.links[pod.by_name("eth0") or 0]["name"] = "eth1"
    with pytest.raises(CniError) as exc:
        verbs.cmd_check(_env(tmp_path, "CHECK"), _conf(tmp_path, prevResult=result),
                        store=store)
    assert "pod interface eth0: missing" in exc.value.details
    assert "host route 10.0.0.1/32" in exc.value.details


def test_add_where_the_veth_exists_is_if_exists_and_undone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    node, _pod, _ = install(monkeypatch)
    node.add_link(verbs.veth_name("c1", "eth0"), "veth")
    store = FakeStore()
    with pytest.raises(CniError) as exc:
        _add(tmp_path, store)
    assert exc.value.code == errors.IF_EXISTS and "host interface" in exc.value.msg
    assert (store.ips, store.atts) == ({}, {})


def test_add_where_the_pod_ifname_exists_is_if_exists(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _node, pod, _ = install(monkeypatch)
    pod.add_link("eth0")
    with pytest.raises(CniError) as exc:
        _add(tmp_path, FakeStore())
    assert exc.value.code == errors.IF_EXISTS and "eth0 already exists" in exc.value.msg


def test_a_refused_step_undoes_the_veth_and_ipam(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    node, pod, _ = install(monkeypatch)
    pod.fail[rt.RTM_NEWADDR] = errno.EPERM
    store = FakeStore()
    with pytest.raises(CniError) as exc:
        _add(tmp_path, store)
    assert exc.value.code == errors.NETLINK
    assert "kernel refused to add address" in exc.value.msg
    assert node.by_name(verbs.veth_name("c1", "eth0")) is None and pod.by_name("eth0") is None
    assert (store.ips, store.atts) == ({}, {})


def test_sysctls_that_cannot_be_written_fail_the_add(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    node, _pod, _ = install(monkeypatch)

    def refuse(path: str, _value: str) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", path)

    monkeypatch.setattr(verbs, "write_sysctl", refuse)
    with pytest.raises(CniError) as exc:
        _add(tmp_path, FakeStore())
    assert exc.value.code == errors.NETLINK and "sysctls" in exc.value.msg
    assert node.by_name(verbs.veth_name("c1", "eth0")) is None


def test_del_removes_the_pair_and_releases_twice(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    node, pod, _ = install(monkeypatch)
    store = FakeStore()
    _add(tmp_path, store)
    for _ in range(2):
        verbs.cmd_del(_env(tmp_path, "DEL"), _conf(tmp_path), store=store)
        assert node.by_name(verbs.veth_name("c1", "eth0")) is None
        assert pod.by_name("eth0") is None and node.routes == []
        assert (store.ips, store.atts) == ({}, {})
    # The kernel refuses: the error, and nothing released (the pair is still there). (With
    # the pair already gone DEL succeeds whatever RTM_DELLINK would answer: it polls the name.)
    _add(tmp_path, store)
    node.fail[rt.RTM_DELLINK] = errno.EPERM
    with pytest.raises(CniError) as exc:
        verbs.cmd_del(_env(tmp_path, "DEL"), _conf(tmp_path), store=store)
    assert exc.value.code == errors.NETLINK
    assert node.by_name(verbs.veth_name("c1", "eth0")) is not None and store.ips


def test_gc_removes_stale_veths_and_stray_routes_only(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    node, _pod, _ = install(monkeypatch)
    store = FakeStore()
    _add(tmp_path, store, "keep")
    node.peer = FakeKernel()  # the second pod's namespace
    _add(tmp_path, store, "gone")
    keep = node.by_name(verbs.veth_name("keep", "eth0")) or 0
    uplink = node.add_link("uplink0", "veth")
    stray = {"family": rt.AF_INET, "dst_len": 32, "table": 254, "gateway": None}
    node.routes += [
        {**stray, "dst": bytes([10, 9, 9, 9]), "oif": keep, "protocol": ROUTE_PROTOCOL},
        {**stray, "dst": bytes([10, 9, 9, 8]), "oif": keep, "protocol": 4},  # not ours
        {**stray, "dst": bytes([10, 9, 9, 7]), "oif": uplink, "protocol": CNI_ROUTE_PROTOCOL}]
    conf = _conf(tmp_path, **{"cni.dev/valid-attachments": [
        {"containerID": "keep", "ifname": "eth0"}]})
    verbs.cmd_gc(_env(tmp_path, "GC"), conf, store=store)
    assert node.by_name(verbs.veth_name("gone", "eth0")) is None
    assert node.by_name("uplink0") == uplink and keep in node.links
    left = sorted((r["dst"], r["oif"]) for r in node.routes)
    assert (bytes([10, 9, 9, 9]), keep) not in left
    assert (bytes([10, 9, 9, 8]), keep) in left and (bytes([10, 9, 9, 7]), uplink) in left
    assert list(store.atts) == [verbs.veth_name("keep", "eth0")]
    node.fail[rt.RTM_GETLINK] = errno.EPERM
    with pytest.raises(CniError) as exc:
        verbs.cmd_gc(_env(tmp_path, "GC"), conf, store=store)
    assert exc.value.code == errors.NETLINK
    with pytest.raises(CniError) as exc:
        verbs.cmd_gc(_env(tmp_path, "GC"), _conf(tmp_path), store=store)
    assert exc.value.code == errors.INVALID_CONFIG


def test_check_needs_prev_result(tmp_path: Path) -> None:
    with pytest.raises(CniError) as exc:
        verbs.cmd_check(_env(tmp_path, "CHECK"), _conf(tmp_path), store=FakeStore())
    assert exc.value.code == errors.INVALID_CONFIG


def test_pools_from_the_node_file(tmp_path: Path) -> None:
    node_file = tmp_path / "node.json"
    node_file.write_text('{"version": 1, "node": "n1", "mtu": 9000, "podRouteProtocol": 72,'
                         ' "podBlocks": {"ipv4": ["10.1.0.0/26"], "ipv6": ["fd00:1::/120"]}}')
    conf = parse_conf({"cniVersion": "1.1.0", "name": "n", "nodeFile": str(node_file)}, b"")
    pl = verbs.pools(conf)
    assert (pl.mtu, pl.protocol, [r[0].subnet for r in pl.rangesets]) == (
        9000, 72, ["10.1.0.0/26", "fd00:1::/120"])
    node_file.write_text('{"version": 1, "node": "n1", "podBlocks": {"ipv4": ["fd00::/64"]}}')
    with pytest.raises(CniError) as exc:
        verbs.pools(conf)
    assert exc.value.code == errors.NOT_AVAILABLE and "is not IPv4" in exc.value.msg
    node_file.write_text('{"version": 1, "node": "n1", "podBlocks": {"ipv4": ["nonsense"]}}')
    with pytest.raises(CniError):
        verbs.pools(conf)
    node_file.write_text('{"version": 1, "node": "n1"}')
    with pytest.raises(CniError) as exc:
        verbs.pools(conf)
    assert "no pod block" in exc.value.msg


def test_fake_kernel_numbers_links_uniquely() -> None:
    a, b = FakeKernel(), FakeKernel()
    assert a.add_link("x") != b.add_link("x")
