"""Helpers for tests that build real network namespaces.

Every namespace a test makes has a unique name starting with `ft` and is removed at teardown,
even when the test fails. Nothing here touches a namespace it did not create.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress

import pytest

from speaker.capabilities import Capabilities

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need_root() -> None:
    """Skip locally when not root; in CI, fail loudly instead of skipping."""
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("root tests must run as root in CI")
        pytest.skip("needs root")


def need_tool(*names: str) -> None:
    for name in names:
        if shutil.which(name) is None and not os.path.exists(name):
            if IN_CI:
                pytest.fail(f"required tool {name!r} is missing in CI")
            pytest.skip(f"needs {name}")


def sh(*args: str, ns: str | None = None, check: bool = True, timeout: float = 30,
       input: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = list(args)
    if ns is not None:
        cmd = ["ip", "netns", "exec", ns, *cmd]
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=timeout,
                          input=input)


def unique(prefix: str = "ft") -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


class Netns:
    """Create namespaces and veth links; remove all of them on close()."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def add(self, hint: str = "") -> str:
        name = unique("ft" + hint[:4])
        sh("ip", "netns", "add", name)
        self.names.append(name)
        sh("ip", "link", "set", "lo", "up", ns=name)
        return name

    def veth(self, ns_a: str, if_a: str, ns_b: str, if_b: str) -> None:
        tmp_a, tmp_b = unique("va"), unique("vb")
        sh("ip", "link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b)
        sh("ip", "link", "set", tmp_a, "netns", ns_a)
        sh("ip", "link", "set", tmp_b, "netns", ns_b)
        sh("ip", "link", "set", tmp_a, "name", if_a, ns=ns_a)
        sh("ip", "link", "set", tmp_b, "name", if_b, ns=ns_b)
        sh("ip", "link", "set", if_a, "up", ns=ns_a)
        sh("ip", "link", "set", if_b, "up", ns=ns_b)

    def close(self) -> None:
        for name in reversed(self.names):
            # Kill whatever still runs inside, then remove the namespace itself.
            pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True,
                                  check=False)
            for pid in pids.stdout.split():
                with suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), 9)
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        self.names.clear()


@contextmanager
def netns_set() -> Iterator[Netns]:
    ns = Netns()
    try:
        yield ns
    finally:
        ns.close()


# -- kernel features, as the capability probe finds them -------------------------------------------
#: tests not run because the probe proved the kernel lacks what they test: (test id, reason)
NOT_RUN: list[tuple[str, str]] = []
_CAPS: list[Capabilities] = []


def capabilities() -> Capabilities:
    """The speaker's capability probe, run once per test session (a throw-away namespace)."""
    if not _CAPS:
        from speaker.capabilities import probe

        _CAPS.append(probe())
    return _CAPS[0]


def need_kernel_srv6(test_id: str = "") -> None:
    """The one allowed skip: a test of kernel seg6 on a kernel the probe proves lacks it.

    Reported as "not run" with the probe's reason in a line CI prints (tests/conftest.py); the
    same behaviour is tested on the eBPF datapath.
    """
    from speaker.capabilities import KERNEL_NEEDS

    need_kernel(KERNEL_NEEDS, "kernel seg6", test_id)


def need_kernel(needs: Iterable[str], what: str, test_id: str = "") -> None:
    """`need_kernel_srv6` for any set of the probe's checks (e.g. the NEXT-C-SID flavours)."""
    need_root()
    caps = capabilities()
    needs = tuple(needs)
    if not caps.all_ok(needs):
        reason = f"{what} absent, per the capability probe: " + caps.why_not(needs)
        NOT_RUN.append((test_id or os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0],
                        reason))
        pytest.skip(f"NOT RUN: {reason}")
