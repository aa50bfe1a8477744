"""`flatroute render --platform vagrant` writes the same VM lab the committed one is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import EXAMPLES, ROOT


def test_cli_renders_the_committed_vagrant_lab(tmp_path: Path) -> None:
    out = tmp_path / "two-site"
    r = subprocess.run([sys.executable, "-m", "cli.main", "render",
                        str(EXAMPLES / "two-site.yaml"), "--platform", "vagrant", "--out",
                        str(out)], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    committed = ROOT / "vagrant" / "two-site"
    for f in committed.rglob("*"):
        if f.is_file():
            rel = f.relative_to(committed)
            assert (out / rel).read_text() == f.read_text(), rel
    bad = subprocess.run([sys.executable, "-m", "cli.main", "render",
                          str(EXAMPLES / "two-site.yaml"), "--platform", "vagrant", "--router",
                          "wan1"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2
    assert "do not apply" in bad.stderr
