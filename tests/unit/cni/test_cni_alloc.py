"""The IPAM allocator (pure, over the store contract) and the verbs' IPAM steps, with the fake
store: no root, no files."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cni import addr, alloc, errors, verb_del, verb_gc, verbs
from cni.config import Env, NetConf, make_range, parse_conf
from cni.errors import CniError
from cni.fakestore import FakeStore


def _ip4(text: str) -> int:
    return addr.parse_ip(text)[1]


def _fmt4(values: list[int]) -> list[str]:
    return [addr.fmt(4, v) for v in values]


# --- candidates: the order, pure ------------------------------------------------------------

def test_candidates_start_low_then_follow_the_hint_and_wrap() -> None:
    rset = [make_range("10.0.0.0/29")]  # .1 - .6
    assert _fmt4(list(alloc.candidates(rset))) == [f"10.0.0.{i}" for i in range(1, 7)]
    after4 = _fmt4(list(alloc.candidates(rset, _ip4("10.0.0.4"))))
    assert after4 == ["10.0.0.5", "10.0.0.6", "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
    at_end = _fmt4(list(alloc.candidates(rset, _ip4("10.0.0.6"))))
    assert at_end[0] == "10.0.0.1" and at_end[-1] == "10.0.0.6"
    # a hint outside the set (a block that moved away) is ignored
    assert _fmt4(list(alloc.candidates(rset, _ip4("10.9.0.1"))))[0] == "10.0.0.1"


def test_candidates_cross_ranges_and_skip_the_gateway() -> None:
    rset = [make_range("10.0.1.0/30"), make_range("10.0.0.0/30")]  # given out of order
    hint = _ip4("10.0.1.1")
    got = _fmt4(list(alloc.candidates(rset, hint, frozenset({_ip4("10.0.0.1")}))))
    assert got == ["10.0.1.2", "10.0.0.2", "10.0.1.1"]


@given(st.lists(st.integers(0, 15), min_size=1, max_size=4, unique=True),
       st.integers(0, 80), st.sets(st.integers(0, 80)))
def test_candidates_name_every_address_once(blocks: list[int], last: int,
                                            skip: set[int]) -> None:
    base = _ip4("10.0.0.0")
    rset = [make_range(f"10.0.0.{b * 8}/29") for b in blocks]
    every = [v for r in rset for v in range(r.start, r.end + 1)]
    got = list(alloc.candidates(rset, base + last, frozenset(base + s for s in skip)))
    assert len(got) == len(set(got))
    assert set(got) == {v for v in every if v - base not in skip}


# --- allocate over the store -------------------------------------------------------------

def test_allocate_hands_out_round_robin_and_never_twice() -> None:
    store, rset = FakeStore(), [make_range("10.0.0.0/29")]
    with store:
        got = [alloc.allocate(store, rset, f"c{i}", "eth0") for i in range(4)]
        assert got == ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
        assert alloc.release(store, "10.0.0.2", "c1", "eth0")
        # round-robin: the freed .2 waits until the end of the range has been used
        assert alloc.allocate(store, rset, "c4", "eth0") == "10.0.0.5"
        assert alloc.allocate(store, rset, "c5", "eth0") == "10.0.0.6"
        # then wraps around to it
        assert alloc.allocate(store, rset, "c6", "eth0") == "10.0.0.2"
        with pytest.raises(CniError) as exc:
            alloc.allocate(store, rset, "c7", "eth0")
    assert exc.value.code == errors.EXHAUSTED
    assert "memory" in exc.value.details
    assert sorted(store.ips) == [f"10.0.0.{i}" for i in range(1, 7)]
    assert store.owner("10.0.0.2") == ("c6", "eth0")


def test_allocate_skips_the_gateway_and_then_runs_out() -> None:
    store, rset = FakeStore(), [make_range("169.254.1.0/29")]  # .1 - .6
    gw = frozenset({_ip4("169.254.1.1")})
    with store:
        got = [alloc.allocate(store, rset, f"c{i}", "eth0", skip=gw) for i in range(5)]
        assert "169.254.1.1" not in got and len(set(got)) == 5
        with pytest.raises(CniError) as exc:
            alloc.allocate(store, rset, "c9", "eth0", skip=gw)
    assert exc.value.code == errors.EXHAUSTED
    assert "169.254.1.1" not in store.ips


def test_allocate_ignores_a_bad_hint_and_needs_the_lock() -> None:
    store, rset = FakeStore(), [make_range("fd00::/126")]
    store.last[6] = "garbage"
    with store:
        assert alloc.allocate(store, rset, "c", "eth0") == "fd00::1"
    with pytest.raises(RuntimeError, match="outside the IPAM lock"):
        alloc.allocate(store, rset, "d", "eth0")


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 9)), max_size=60))
def test_allocate_and_release_keep_one_owner_per_address(ops: list[tuple[bool, int]]) -> None:
    store, rset = FakeStore(), [make_range("10.0.0.0/29"), make_range("10.0.0.16/30")]
    size = 6 + 2
    held: dict[str, str] = {}
    with store:
        for n, (add, i) in enumerate(ops):
            if add and len(held) == size:  # exhausted when, and only when, all are held
                with pytest.raises(CniError, match="no free address"):
                    alloc.allocate(store, rset, f"c{n}", "eth0")
            elif add:
                a = alloc.allocate(store, rset, f"c{n}", "eth0")
                assert a not in held
                held[a] = f"c{n}"
            elif held:
                a = sorted(held)[i % len(held)]
                assert alloc.release(store, a, held.pop(a), "eth0")
            assert {a: o[0] for a, o in store.ips.items()} == held


def test_release_all_takes_what_the_record_lists() -> None:
    store = FakeStore()
    with store:
        store.create_attachment("k", "c1", "eth0")
        store.add_addresses("k", ["10.0.0.1", "fd00::1"])
        for a, owner in (("10.0.0.1", "c1"), ("fd00::1", "c1"), ("10.0.0.2", "c2")):
            store.try_reserve(a, owner, "eth0")
        assert sorted(alloc.release_all(store, "k", "c1", "eth0")) == ["10.0.0.1", "fd00::1"]
        assert alloc.release_all(store, "k", "c1", "eth0") == []  # again: nothing to do
    assert store.ips == {"10.0.0.2": ("c2", "eth0")}
    assert store.atts == {}


@pytest.mark.parametrize("record", ["none", "empty"])
def test_release_all_finds_what_an_interrupted_add_reserved(record: str) -> None:
    """ADD writes the record's addresses once, after every reservation: killed in between, it
    leaves a record without addresses (or, killed earlier still, none) and reservations."""
    store = FakeStore()
    with store:
        if record == "empty":
            store.create_attachment("k", "c1", "eth0")
        store.try_reserve("10.0.0.1", "c1", "eth0")
        store.try_reserve("10.0.0.2", "c2", "eth0")
        assert alloc.release_all(store, "k", "c1", "eth0") == ["10.0.0.1"]
    assert (store.ips, store.atts) == ({"10.0.0.2": ("c2", "eth0")}, {})


# --- the verbs with the fake store -------------------------------------------------------

def _env(tmp: Path, cid: str = "c1", command: str = "ADD") -> Env:
    netns = tmp / "not-a-netns"
    netns.write_text("")
    return Env(command, cid, "eth0", str(netns), ("/nonexistent",), "")


def _conf(tmp: Path, v6: str = "fd00::/125", **extra: object) -> NetConf:
    doc = {"cniVersion": "1.1.0", "name": "n", "dataDir": str(tmp / "never-used"),
           "ipam": {"ranges": [[{"subnet": "10.0.0.0/29"}], [{"subnet": v6}]]}, **extra}
    return parse_conf(doc, b"")


def test_a_failed_add_gives_back_its_addresses_and_record(tmp_path: Path) -> None:
    """The netns is a plain file: ADD fails after IPAM (setns refuses it, root or not) and
    undoes IPAM under the lock, which it took again after letting go of it."""
    store = FakeStore()
    with pytest.raises(CniError) as exc:
        verbs.cmd_add(_env(tmp_path), _conf(tmp_path), store=store)
    assert exc.value.code == errors.INVALID_ENV
    assert (store.ips, store.atts, store.held, store.entries) == ({}, {}, False, 2)
    assert store.last == {4: "10.0.0.1", 6: "fd00::1"}  # only a hint
    assert not (tmp_path / "never-used").exists()


def test_add_running_out_in_the_second_family_releases_the_first(tmp_path: Path) -> None:
    store = FakeStore()
    with store:
        store.try_reserve("fd00::1", "other", "eth0")
    with pytest.raises(CniError) as exc:
        verbs.cmd_add(_env(tmp_path), _conf(tmp_path, v6="fd00::1/128"), store=store)
    assert exc.value.code == errors.EXHAUSTED
    assert store.ips == {"fd00::1": ("other", "eth0")}
    assert store.atts == {}


def test_a_duplicate_add_changes_nothing(tmp_path: Path) -> None:
    store = FakeStore()
    key = verbs.veth_name("c1", "eth0")
    with store:
        store.create_attachment(key, "c1", "eth0")
        store.add_addresses(key, ["10.0.0.3"])
        store.try_reserve("10.0.0.3", "c1", "eth0")
    with pytest.raises(CniError) as exc:
        verbs.cmd_add(_env(tmp_path), _conf(tmp_path), store=store)
    assert exc.value.code == errors.DUPLICATE
    assert store.atts == {key: ("c1", "eth0", ["10.0.0.3"])}
    assert store.ips == {"10.0.0.3": ("c1", "eth0")}
    assert not store.held


def test_add_without_a_pod_block_changes_nothing(tmp_path: Path) -> None:
    store = FakeStore()
    conf = parse_conf({"cniVersion": "1.1.0", "name": "n",
                       "nodeFile": str(tmp_path / "absent.json")}, b"")
    with pytest.raises(CniError) as exc:
        verbs.cmd_add(_env(tmp_path), conf, store=store)
    assert exc.value.code == errors.NOT_AVAILABLE
    assert store.entries == 0


def test_del_releases_and_is_idempotent() -> None:
    store = FakeStore()
    with store:
        store.create_attachment("k", "c1", "eth0")
        store.add_addresses("k", ["10.0.0.1", "fd00::1"])
        store.try_reserve("10.0.0.1", "c1", "eth0")
        store.try_reserve("fd00::1", "c1", "eth0")
        store.try_reserve("10.0.0.2", "c2", "eth0")
    assert sorted(verb_del.release_attachment(store, "k", "c1", "eth0")) == ["10.0.0.1", "fd00::1"]
    assert verb_del.release_attachment(store, "k", "c1", "eth0") == []
    assert (store.ips, store.atts, store.held) == ({"10.0.0.2": ("c2", "eth0")}, {}, False)


def test_gc_keeps_the_valid_and_releases_the_rest() -> None:
    store = FakeStore()
    with store:
        for key, cid, a in (("ka", "a", "10.0.0.1"), ("kb", "b", "10.0.0.2")):
            store.create_attachment(key, cid, "eth0")
            store.add_addresses(key, [a])
            store.try_reserve(a, cid, "eth0")
        store.try_reserve("10.0.0.3", "orphan", "eth0")  # no record at all
    kept = verb_gc.collect_garbage(store, {("a", "eth0")})
    assert kept == {"ka": ["10.0.0.1"]}
    assert store.ips == {"10.0.0.1": ("a", "eth0")}
    assert list(store.atts) == ["ka"]


def test_gc_with_a_delegate_dels_each_stale_attachment_through_it() -> None:
    store = FakeStore()
    with store:
        store.create_attachment("kb", "b", "eth0")
        store.add_addresses("kb", ["10.0.0.2"])
    called: list[tuple[str, str]] = []
    kept = verb_gc.collect_garbage(store, set(), lambda c, i: called.append((c, i)))
    assert (kept, called, store.atts) == ({}, [("b", "eth0")], {})


def test_status_reports_reservations_outside_the_blocks(tmp_path: Path) -> None:
    store, conf = FakeStore(), _conf(tmp_path)
    env = _env(tmp_path, command="STATUS")
    verbs.cmd_status(env, conf, store=store)
    with store:
        store.try_reserve("10.0.0.1", "a", "eth0")
        store.try_reserve("10.9.0.1", "b", "eth0")  # its block moved to another node
    with pytest.raises(CniError) as exc:
        verbs.cmd_status(env, conf, store=store)
    assert exc.value.code == errors.DEGRADED
    assert "10.9.0.1" in exc.value.details and "10.0.0.1" not in exc.value.details
    store.usable = False
    with pytest.raises(CniError) as exc:
        verbs.cmd_status(env, conf, store=store)
    assert exc.value.code == errors.NOT_AVAILABLE


def test_check_lists_what_the_store_gets_wrong(tmp_path: Path) -> None:
    store, conf = FakeStore(), _conf(tmp_path, prevResult={"ips": []})
    env = Env("CHECK", "c1", "eth0", str(tmp_path / "gone"), ("/nonexistent",), "")
    with pytest.raises(CniError) as exc:
        verbs.cmd_check(env, conf, store=store)
    assert exc.value.code == errors.UNKNOWN_CONTAINER
    key = verbs.veth_name("c1", "eth0")
    with store:
        store.create_attachment(key, "c1", "eth0")
        store.add_addresses(key, ["10.0.0.1"])
        store.try_reserve("10.0.0.1", "thief", "eth0")
    with pytest.raises(CniError) as exc:  # reads only: dumps of this host's links, no change
        verbs.cmd_check(env, conf, store=store)
    assert exc.value.code == errors.CHECK_FAILED
    for problem in ("reservation 10.0.0.1: held by thief/eth0",
                    "prevResult: address 10.0.0.1 missing", f"host veth {key}: missing",
                    "netns"):
        assert problem in exc.value.details
