"""flatroute-cni without root: JSON, addresses, config, IPAM store, the edge, start-up imports."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cni import addr, alloc, errors, install, ipam, jsonlite
from cni.config import make_range, parse_conf, parse_ranges, read_node_file
from cni.errors import CniError
from cni.main import run
from cni.verbs import is_our_veth, veth_name
from flatroute import CNI_ROUTE_PROTOCOL, ROUTE_PROTOCOL, nodefile

ROOT = Path(__file__).resolve().parents[3]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children), max_leaves=20)


@given(json_values)
def test_jsonlite_round_trips_like_json(value: Any) -> None:
    assert json.loads(jsonlite.dumps(value)) == value
    assert jsonlite.loads(json.dumps(value)) == value


@pytest.mark.parametrize("text", ["", "{", "[1,]", '{"a":1} x', "NaN", '"abc', "{'a': 1}"])
def test_jsonlite_rejects_garbage(text: str) -> None:
    with pytest.raises(jsonlite.JSONError):
        jsonlite.loads(text)


def test_addresses() -> None:
    assert addr.parse_cidr("10.1.2.0/24") == (4, 0x0A010200, 24)
    assert addr.fmt(6, addr.parse_ip("fd00:0::1")[1]) == "fd00::1"
    for bad in ("10.1.2.3/24", "10.0.0.0/33", "x/8", "10.0.0.0"):
        with pytest.raises(ValueError, match=r"\S"):
            addr.parse_cidr(bad)


def test_ranges_follow_host_local() -> None:
    r = make_range("10.0.0.0/30")
    assert (addr.fmt(4, r.start), addr.fmt(4, r.end)) == ("10.0.0.1", "10.0.0.2")
    r6 = make_range("fd00::/126")
    assert (addr.fmt(6, r6.start), addr.fmt(6, r6.end)) == ("fd00::1", "fd00::3")
    for bad in ([], [[]], [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.1.0.0/24"}]],
                [[{"subnet": "10.0.0.0/24"}, {"subnet": "10.0.0.128/25"}]],
                [[{"subnet": "10.0.0.0/24", "rangeEnd": "10.0.0.1", "rangeStart": "10.0.0.9"}]]):
        with pytest.raises(CniError) as exc:
            parse_ranges(bad)
        assert exc.value.code == errors.INVALID_CONFIG


@given(st.text(min_size=1, max_size=64), st.text(min_size=1, max_size=15))
def test_veth_name_is_short_deterministic_and_ours(cid: str, ifname: str) -> None:
    name = veth_name(cid, ifname)
    assert len(name) == 15
    assert name == veth_name(cid, ifname)
    assert is_our_veth(name)


def test_veth_names_differ() -> None:
    names = {veth_name(f"c{i}", "eth0") for i in range(2000)} | {veth_name("c1", "eth1")}
    assert len(names) == 2001


def test_node_file_matches_the_contract(tmp_path: Path) -> None:
    doc = nodefile.NodeFile(node="n1", ipv4_blocks=("10.0.0.0/26",),
                            ipv6_blocks=("fd00::/122",), mtu=1450)
    path = tmp_path / "node.json"
    path.write_text(doc.to_json())
    ours = read_node_file(str(path))
    theirs = nodefile.read(str(path))
    assert ours.blocks == (theirs.ipv4_blocks, theirs.ipv6_blocks)
    assert (ours.mtu, ours.gateway_v4, ours.gateway_v6, ours.route_protocol,
            ours.pod_route_protocol) == (
        theirs.mtu, theirs.gateway_v4, theirs.gateway_v6, theirs.route_protocol,
        theirs.pod_route_protocol)
    path.write_text('{"version": 1, "node": "n1", "routeProtocol": 70}')  # an older speaker
    assert read_node_file(str(path)).pod_route_protocol == \
        nodefile.read(str(path)).pod_route_protocol == CNI_ROUTE_PROTOCOL


def test_pod_routes_get_the_cni_protocol_and_70_is_still_recognised(tmp_path: Path) -> None:
    from cni.verbs import pod_route_protocols, pools

    path = tmp_path / "node.json"
    path.write_text(nodefile.NodeFile("n1", ("10.0.0.0/26",), ()).to_json())
    base = {"cniVersion": "1.1.0", "name": "n", "nodeFile": str(path)}
    conf = parse_conf(base, b"")
    assert pools(conf).protocol == CNI_ROUTE_PROTOCOL
    assert pod_route_protocols(conf) == {CNI_ROUTE_PROTOCOL, ROUTE_PROTOCOL}
    path.write_text(nodefile.NodeFile("n1", ("10.0.0.0/26",), (),
                                      pod_route_protocol=99).to_json())
    assert pools(conf).protocol == 99
    assert pod_route_protocols(conf) == {99, CNI_ROUTE_PROTOCOL, ROUTE_PROTOCOL}
    override = parse_conf({**base, "routeProtocol": 98}, b"")  # the config wins, like mtu
    assert pools(override).protocol == 98
    standalone = parse_conf({**base, "ipam": {"ranges": [[{"subnet": "10.1.0.0/24"}]]}}, b"")
    assert pools(standalone).protocol == CNI_ROUTE_PROTOCOL
    path.unlink()  # GC works without a node file
    assert pod_route_protocols(conf) == {CNI_ROUTE_PROTOCOL, ROUTE_PROTOCOL}
    from cni import config

    assert config.DEFAULT_NODE_FILE == nodefile.DEFAULT_PATH


def test_file_store_allocates_uniquely_and_releases(tmp_path: Path) -> None:
    rset = [make_range("10.0.0.0/29")]
    got = []
    store = ipam.FileStore(str(tmp_path), "net")
    with store:
        for i in range(6):
            got.append(alloc.allocate(store, rset, f"c{i}", "eth0"))
        with pytest.raises(CniError) as exc:
            alloc.allocate(store, rset, "c9", "eth0")
        assert exc.value.code == errors.EXHAUSTED
        assert len(set(got)) == 6
        assert not alloc.release(store, got[0], "someone-else", "eth0")
        assert alloc.release(store, got[0], "c0", "eth0")
        assert alloc.allocate(store, rset, "c9", "eth0") == got[0]
    assert sorted(os.listdir(tmp_path / "net" / "ip")) == sorted(got)
    assert (tmp_path / "net" / "last.4").read_text() == got[0]


def test_file_store_attachments_and_its_lock(tmp_path: Path) -> None:
    store = ipam.FileStore(str(tmp_path), "net")
    with store:
        store.create_attachment("k", "c1", "eth0")
        store.add_addresses("k", ["10.0.0.1", "fd00::1"])
        with pytest.raises(CniError) as exc:
            store.create_attachment("k", "c1", "eth0")
        assert exc.value.code == errors.DUPLICATE
        with pytest.raises(CniError) as exc:  # POSIX locks are per process: never twice
            store.__enter__()
        assert exc.value.code == errors.INTERNAL
    assert store.read_attachment("k") == ("c1", "eth0", ["10.0.0.1", "fd00::1"])
    assert (tmp_path / "net" / "att" / "k").read_text() == "c1\neth0\n10.0.0.1\nfd00::1\n"
    with store:  # let go, and taken again
        store.remove_attachment("k")
    assert store.attachments() == {}
    store.check_usable()


def _run(env: dict[str, str], stdin: str) -> tuple[int, dict[str, Any]]:
    out = io.StringIO()
    rc = run(env, io.BytesIO(stdin.encode()), out)  # type: ignore[arg-type]
    return rc, json.loads(out.getvalue())


@pytest.mark.parametrize(("env", "stdin", "code"), [
    ({}, '{"cniVersion":"1.1.0","name":"n"}', 4),
    ({"CNI_COMMAND": "ADD"}, '{"cniVersion":"1.1.0","name":"n"}', 4),
    ({"CNI_COMMAND": "GC"}, "garbage", 4),  # env is checked first: CNI_PATH missing
    ({"CNI_COMMAND": "GC", "CNI_PATH": "/x"}, "garbage", 6),
    ({"CNI_COMMAND": "GC", "CNI_PATH": "/x"}, '{"cniVersion":"0.2.0","name":"n"}', 1),
    ({"CNI_COMMAND": "GC", "CNI_PATH": "/x"}, '{"cniVersion":"1.1.0","name":"n"}', 7),
])
def test_edge_errors(env: dict[str, str], stdin: str, code: int) -> None:
    rc, doc = _run(env, stdin)
    assert rc == 1
    assert doc["code"] == code
    assert set(doc) <= {"cniVersion", "code", "msg", "details"}


def test_version_negotiation() -> None:
    rc, doc = _run({"CNI_COMMAND": "VERSION"}, '{"cniVersion":"0.4.0"}')
    assert rc == 0
    assert doc["cniVersion"] == "0.4.0"
    assert {"0.4.0", "1.0.0", "1.1.0"} <= set(doc["supportedVersions"])
    rc, doc = _run({"CNI_COMMAND": "VERSION"}, "")
    assert (rc, doc["cniVersion"]) == (0, "1.1.0")


def test_conf_reads_valid_attachments() -> None:
    conf = parse_conf({"cniVersion": "1.1.0", "name": "n", "cni.dev/valid-attachments": [
        {"containerID": "a", "ifname": "eth0"}]}, b"")
    assert conf.valid_attachments == [("a", "eth0")]


def test_hot_path_imports_stay_lean() -> None:
    """The exec'd plugin, every verb and the shared rtnetlink codec under it must not pull in
    json, re, typing, socket, struct, ipaddress, pyroute2 or the speaker."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import cni.main, cni.verbs, "
            "cni.verb_add, cni.verb_del, cni.verb_check, cni.verb_gc, cni.verb_status; "
            "heavy = {'json', 're', 'typing', 'socket', 'ipaddress', 'pyroute2', 'dataclasses',"
            " 'subprocess', 'enum', 'struct', 'functools', 'contextlib', 'flatroute.nodefile',"
            " 'speaker', 'speaker.routes'};"
            "print(sorted(heavy & set(sys.modules)), 'rtnetlink' in sys.modules)")
    out = subprocess.run([sys.executable, "-IS", "-c", code, str(ROOT)], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == "[] True"


def test_install_and_uninstall(tmp_path: Path) -> None:
    bin_dir, conf_dir = tmp_path / "bin", tmp_path / "net.d"
    assert install.main(["install", "--bin-dir", str(bin_dir), "--conf-dir", str(conf_dir),
                         "--python", sys.executable]) == 0
    conf = json.loads((conf_dir / "10-flatroute.conflist").read_text())
    assert conf["cniVersion"] == "1.1.0"
    assert conf["plugins"][0]["type"] == "flatroute-cni"
    proc = subprocess.run([str(bin_dir / "flatroute-cni")], input='{"cniVersion":"1.0.0"}',
                          env={"CNI_COMMAND": "VERSION"}, capture_output=True, text=True,
                          check=True)
    assert json.loads(proc.stdout)["cniVersion"] == "1.0.0"
    (conf_dir / "99-other.conflist").write_text("{}")
    assert install.main(["uninstall", "--bin-dir", str(bin_dir), "--conf-dir",
                         str(conf_dir)]) == 0
    assert sorted(p.name for p in conf_dir.iterdir()) == ["99-other.conflist"]
    assert list(bin_dir.iterdir()) == []
