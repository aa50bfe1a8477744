"""Router discovery on an unnumbered link, between two real namespaces (speaker/ndisc.py).

One end advertises itself the way the speaker does (or stays silent), the other looks for the
router on its end of the veth; and the kernel adapter reads the link-local address the kernel
gave the interface.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from ipaddress import IPv6Address
from pathlib import Path

import pytest

from tests.netns_util import Netns, need_root, netns_set, sh

pytestmark = pytest.mark.root
ROOT = str(Path(__file__).resolve().parents[3])


def py(ns: str, code: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=timeout, check=False,
                          cwd=ROOT)


def link_local(ns: str, dev: str) -> IPv6Address:
    """The interface's link-local address, once duplicate address detection is done."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        out = sh("ip", "-6", "-o", "addr", "show", "dev", dev, "scope", "link", ns=ns).stdout
        if out and "tentative" not in out:
            return IPv6Address(out.split()[3].split("/")[0])
        time.sleep(0.1)
    raise AssertionError(f"{dev} in {ns} never got a usable link-local address")


@pytest.fixture
def link() -> Iterator[tuple[Netns, str, str]]:
    need_root()
    with netns_set() as nets:
        node, tor = nets.add("node"), nets.add("tor")
        nets.veth(node, "up0", tor, "node0")
        yield nets, node, tor


def test_finds_the_router_that_advertises_and_only_it(link: tuple[Netns, str, str]) -> None:
    _, node, tor = link
    tor_ll, node_ll = link_local(tor, "node0"), link_local(node, "up0")
    advertiser = subprocess.Popen(
        ["ip", "netns", "exec", tor, sys.executable, "-c",
         "import time\nfrom speaker import ndisc\n"
         "while True:\n    assert ndisc.advertise('node0')\n    time.sleep(0.2)\n"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        found = py(node, "from speaker import ndisc; print(ndisc.find_router('up0', 5))")
        assert found.returncode == 0, found.stderr
        assert IPv6Address(found.stdout.strip()) == tor_ll != node_ll
    finally:
        advertiser.kill()
        _, err = advertiser.communicate()
    assert "Error" not in err, err


def test_a_silent_link_is_none_and_a_missing_uplink_an_error(
        link: tuple[Netns, str, str]) -> None:
    _, node, _tor = link
    link_local(node, "up0")
    silent = py(node, "from speaker import ndisc; print(ndisc.find_router('up0', 0.6))")
    assert silent.returncode == 0, silent.stderr
    assert silent.stdout.strip() == "None"
    missing = py(node, "from speaker import ndisc; ndisc.find_router('nope0', 0.2)")
    assert missing.returncode != 0 and "uplink nope0 not found" in missing.stderr


def test_kernel_reports_the_usable_link_local_address(link: tuple[Netns, str, str]) -> None:
    _, node, _tor = link
    ll = link_local(node, "up0")
    got = py(node, "from speaker.netlink import Kernel\nk = Kernel()\n"
             "print(k.link_local('up0'), k.link_local('lo'), k.link_local('nope0'))")
    assert got.returncode == 0, got.stderr
    assert got.stdout.split() == [str(ll), "None", "None"]
