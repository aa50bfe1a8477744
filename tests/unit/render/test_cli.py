"""`flatroute render` on the command line: stdout, --out, --diff, --platform all, exit codes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cli.main import main
from tests.conftest import EXAMPLES

SINGLE = str(EXAMPLES / "single-rack.yaml")
TWO = str(EXAMPLES / "two-site.yaml")


def test_stdout_has_a_separator_per_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", TWO, "--platform", "frr"]) == 0
    out = capsys.readouterr().out
    seps = [x for x in out.splitlines() if x.startswith("### ")]
    assert seps == ["### tk-r1-a tk-r1-a.conf", "### tk-r1-b tk-r1-b.conf",
                    "### os-r1-a os-r1-a.conf", "### os-r1-b os-r1-b.conf",
                    "### wan1 wan1.conf", "### wan1 wan1.srv6.sh"]


def test_out_writes_once_and_rerender_is_byte_identical(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    assert main(["render", TWO, "--platform", "frr", "--out", str(out)]) == 0
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(first) == {"tk-r1-a.conf", "tk-r1-b.conf", "os-r1-a.conf", "os-r1-b.conf",
                          "wan1.conf", "wan1.srv6.sh"}
    assert os.access(out / "wan1.srv6.sh", os.X_OK)
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    capsys.readouterr()
    assert main(["render", TWO, "--platform", "frr", "--out", str(out)]) == 0
    assert "6 files, 0 changed" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes  # untouched
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left
    (out / "gone.conf").write_text("a router that left the fabric\n")
    assert main(["render", TWO, "--platform", "frr", "--out", str(out)]) == 0
    assert "gone.conf is not part of this render (left alone)" in capsys.readouterr().err
    assert (out / "gone.conf").exists()


def test_diff_is_empty_and_exit_0_when_unchanged_else_unified_and_exit_1(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    assert main(["render", SINGLE, "--platform", "frr", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["render", SINGLE, "--platform", "frr", "--diff", str(out)]) == 0
    assert capsys.readouterr().out == ""
    changed = tmp_path / "changed.yaml"
    changed.write_text(Path(SINGLE).read_text().replace("gracefulRestart: 120",
                                                        "gracefulRestart: 300"))
    (out / "stale.conf").write_text("old\n")
    assert main(["render", str(changed), "--platform", "frr", "--diff", str(out)]) == 1
    diff = capsys.readouterr().out
    assert "--- a/r1-tor.conf\n+++ b/r1-tor.conf\n" in diff
    assert "- bgp graceful-restart restart-time 120\n" in diff
    assert "+ bgp graceful-restart restart-time 300\n" in diff
    assert "--- a/stale.conf\n+++ /dev/null\n" in diff
    assert (out / "r1-tor.conf").read_text().count("restart-time 120") == 1  # wrote nothing


def test_platform_all_writes_one_directory_per_platform(tmp_path: Path) -> None:
    assert main(["render", SINGLE, "--platform", "all", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eos", "frr", "junos", "nxos",
                                                          "sonic"]
    assert (tmp_path / "sonic" / "r1-tor.json").is_file()
    assert (tmp_path / "junos" / "r1-tor.junos.conf").is_file()


def test_golden_directory_diffs_clean(capsys: pytest.CaptureFixture[str]) -> None:
    # single-rack: every platform renders it (two-site's full-SID WAN router is refused on
    # SONiC, whose static SRv6 has uSID behaviours only)
    rendered = EXAMPLES.parent / "rendered" / "single-rack"
    assert main(["render", SINGLE, "--platform", "all", "--diff", str(rendered)]) == 0
    assert capsys.readouterr().out == ""


def test_unexpressible_feature_exits_2_with_one_line_per_tor(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", str(EXAMPLES / "leaf-spine.yaml"), "--platform", "nxos"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 4
    assert all(x.startswith("error: ") and "spec.bgp.ipv4OverIpv6" in x and "ToR r" in x
               for x in err)


def test_out_and_diff_together_is_refused(tmp_path: Path) -> None:
    assert main(["render", SINGLE, "--out", str(tmp_path), "--diff", str(tmp_path)]) == 2


def test_router_filter(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", TWO, "--platform", "frr", "--router", "wan1"]) == 0
    out = capsys.readouterr().out
    assert [x for x in out.splitlines() if x.startswith("###")] == [
        "### wan1 wan1.conf", "### wan1 wan1.srv6.sh"]
