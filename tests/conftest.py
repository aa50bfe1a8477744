from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns_util import Netns, need_root

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "fabric-configs" / "examples"


@pytest.fixture
def netns() -> Iterator[Netns]:
    """Namespaces made by this test only, removed even when it fails."""
    need_root()
    ns = Netns()
    try:
        yield ns
    finally:
        ns.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line per test the kernel cannot run (the probe's reason): CI prints them."""
    from tests.netns_util import NOT_RUN

    for test_id, reason in NOT_RUN:
        terminalreporter.write_line(f"NOT RUN (kernel lacks it): {test_id}: {reason}")
