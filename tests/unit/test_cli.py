"""The `flatroute` CLI through its real entry point: exit statuses and messages."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES

EXE = shutil.which("flatroute")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [EXE] if EXE else [sys.executable, "-m", "cli.main"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=60,
                          check=False)


def test_validate_examples_ok() -> None:
    r = run("validate", *sorted(str(p) for p in EXAMPLES.glob("*.yaml")))
    assert r.returncode == 0, r.stderr
    assert "two-site.yaml: ok (2 sites, 2 racks, 4 nodes)" in r.stdout


def test_validate_bad_file_exit_2_one_line_per_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    text = (EXAMPLES / "single-rack.yaml").read_text().replace("asn: 65001", "asn: banana")
    bad.write_text(text.replace("rack: r1}", "rack: r9}", 1))
    r = run("validate", str(bad))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert any(f"{bad}: spec.sites[0].racks[0].tors[0].asn" in ln and "'banana'" in ln
               for ln in lines), lines
    assert any("spec.nodes[0].rack" in ln and "'r9'" in ln for ln in lines), lines
    assert "Traceback" not in r.stderr


def test_validate_missing_file_exit_2(tmp_path: Path) -> None:
    r = run("validate", str(tmp_path / "nope.yaml"))
    assert r.returncode == 2
    assert "cannot read file" in r.stderr


def test_plan_table_default() -> None:
    r = run("plan", str(EXAMPLES / "two-site.yaml"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("fabric two-site: 4 nodes in 2 sites")
    for header in ("NODE", "ASN", "POD BLOCKS", "PEERS", "LOCATOR", "SIDS", "AGGREGATES",
                   "SEGMENT LIST"):
        assert header in r.stdout


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_plan_machine_formats_are_deterministic(fmt: str) -> None:
    a = run("plan", str(EXAMPLES / "leaf-spine.yaml"), "--format", fmt)
    b = run("plan", str(EXAMPLES / "leaf-spine.yaml"), "--format", fmt)
    assert a.returncode == 0, a.stderr
    assert a.stdout == b.stdout
    if fmt == "json":
        doc = json.loads(a.stdout)
        assert len(doc["nodes"]) == 8


def test_plan_ledger_update_keeps_allocations(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.json"
    r = run("plan", str(EXAMPLES / "two-site.yaml"), "--ledger", str(ledger),
            "--update-ledger", "--format", "json")
    assert r.returncode == 0, r.stderr
    saved = json.loads(ledger.read_text())
    assert set(saved["nodes"]) == {"tk-n1", "tk-n2", "os-n1", "os-n2"}
    again = run("plan", str(EXAMPLES / "two-site.yaml"), "--ledger", str(ledger),
                "--format", "json")
    assert json.loads(again.stdout)["nodes"] == json.loads(r.stdout)["nodes"]


def test_update_ledger_needs_ledger() -> None:
    r = run("plan", str(EXAMPLES / "two-site.yaml"), "--update-ledger")
    assert r.returncode == 2
    assert "--ledger" in r.stderr


def test_help_everywhere() -> None:
    assert "validate" in run("--help").stdout
    for sub in ("validate", "plan"):
        r = run(sub, "--help")
        assert r.returncode == 0
        assert "usage: flatroute" in r.stdout
