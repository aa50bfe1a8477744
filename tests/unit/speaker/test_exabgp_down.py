"""When ExaBGP is not running, or exits at start, the status says ExaBGP's own reason and
never claims a good pass; paths become absolute at the CLI edge."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import build_parser
from flatroute import speaker_status as status
from speaker.exabgp_process import exit_reason
from tests.unit.speaker.harness import Harness, spec

REASON = "ExaBGP exited with status 0: exabgp.conf is not an exabgp config file (file not found)"


def test_exabgp_that_exits_at_start_is_named_with_its_reason(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.write(spec())
    h.bgp.crashed = REASON
    st = h.once(advance=10)
    assert not st.last_reconcile_ok
    assert st.last_error is not None and "ExaBGP is not running: " + REASON in st.last_error
    assert all(s.lastError == "ExaBGP is not running: " + REASON for s in st.sessions)
    assert not any("MD5" in (s.lastError or "") for s in st.sessions)
    st = h.once(advance=10)  # the hold time passed: still not blamed on the peers
    assert all("peer unreachable" not in (s.lastError or "") for s in st.sessions)
    assert status.health(st, h.clock.time()).code == status.DOWN
    h.bgp.crashed = None
    st = h.once()
    assert st.last_reconcile_ok and st.last_error is None


def test_exit_reason_reads_exabgps_own_words(tmp_path: Path) -> None:
    """From a real ExaBGP run against a configuration it cannot find (a relative path in
    the wrong directory: the issue's case)."""
    log = tmp_path / "exabgp.log.out"
    log.write_bytes(b"an older run's line\n")
    start = log.stat().st_size
    with log.open("ab") as fh:
        subprocess.run([sys.executable, "-m", "exabgp", "server", "run/exabgp.conf"],
                       cwd=tmp_path, stdout=fh, stderr=subprocess.STDOUT, timeout=60,
                       check=False)
    why = exit_reason(str(log), start)
    assert why is not None and "run/exabgp.conf" in why and "file not found" in why, why


def test_exit_reason_without_an_error_line_takes_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "out"
    log.write_text("04:27:00 8158   configuration   could not load/reload configuration\n"
                   "04:27:00 8158   configuration   \n"
                   "04:27:00 8158   configuration   syntax error in section neighbor\n"
                   '04:27:00 8158   configuration   invalid keyword "bogus"\n')
    assert exit_reason(str(log)) == ('could not load/reload configuration / syntax error in '
                                     'section neighbor / invalid keyword "bogus"')
    assert exit_reason(str(tmp_path / "none")) is None


def test_relative_directories_become_absolute_at_the_edge(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args([
        "speaker", "run", "--node", "n1", "--run-dir", "run", "--state-dir", "state",
        "--config-dir", "etc", "--node-state", "n1.json", "--node-file", "node.json",
        "--status-file", "st.json", "--bpf-dir", "bpf"])
    for name in ("run_dir", "state_dir", "config_dir", "node_state", "node_file",
                 "status_file", "bpf_dir"):
        assert getattr(args, name) == str(tmp_path / getattr(args, name).rsplit("/", 1)[1])
    st = build_parser().parse_args(["speaker", "status", "--node", "n1", "--state-dir", "s"])
    assert st.state_dir == str(tmp_path / "s")


def test_a_tor_whose_bgp_is_not_running_is_named_so_not_md5(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.write(spec(bgp={**spec()["bgp"], "md5": {"file": "md5"}}))
    (tmp_path / "md5").write_text("secret")
    h.agent.opts = dataclasses.replace(h.agent.opts, config_dir=str(tmp_path))
    h.tcp = {"10.1.1.1": "refused"}
    h.once()
    st = h.once(advance=10)
    errors = {s.peer: s.lastError for s in st.sessions}
    assert errors["10.1.1.1"] is not None and errors["10.1.1.1"].startswith(
        "connection refused: nothing listens")
    assert errors["10.1.2.1"] is not None and errors["10.1.2.1"].startswith("MD5 mismatch")
    assert h.probed[-1] == [("10.1.1.1", "10.1.1.11"), ("10.1.2.1", "10.1.2.11")]
    h.once(advance=1)
    assert len(h.probed) == 1  # not again within 10 s
