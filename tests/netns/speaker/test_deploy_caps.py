"""The speaker container's capabilities (deploy/speaker.yaml) are enough for what it runs.

No kubelet here, so the container's security context is reproduced with setpriv: the bounding
set is exactly the manifest's `capabilities.add`, no inheritable capabilities, no new
privileges. FRR's bfdd (BFD) and zebra (link-local BFD peers) must start and answer under it;
with the bare NET_ADMIN + NET_RAW the manifest once had, bfdd does not (its privilege code wants
NET_BIND_SERVICE, NET_RAW and SYS_ADMIN, and SETUID/SETGID to become `frr`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from tests.netns_util import need_root, need_tool, netns_set

pytestmark = pytest.mark.root
ROOT = Path(__file__).resolve().parents[3]


def speaker_context() -> dict[str, object]:
    docs = yaml.safe_load_all((ROOT / "deploy" / "speaker.yaml").read_text())
    ds = next(d for d in docs if d and d.get("kind") == "DaemonSet")
    c = next(c for c in ds["spec"]["template"]["spec"]["containers"] if c["name"] == "speaker")
    return dict(c["securityContext"])


def confined(ns: str, caps: list[str], no_new_privs: bool, *cmd: str) -> list[str]:
    bounding = ",".join(["-all", *(f"+{c.lower()}" for c in caps)])
    return ["ip", "netns", "exec", ns, "setpriv", f"--bounding-set={bounding}",
            "--inh-caps=-all", *(["--no-new-privs"] if no_new_privs else []), *cmd]


def start_bfd(ns: str, d: Path, caps: list[str], no_new_privs: bool) -> bool:
    """zebra + bfdd as the speaker starts them; True when bfdd answers vtysh."""
    d.mkdir()
    shutil.chown(d, "frr", "frr")
    conf = d / "bfdd.conf"
    conf.write_text("bfd\n peer 192.0.2.2\n !\n!\n")
    shutil.chown(conf, "frr", "frr")
    zserv = str(d / "zserv.api")
    for daemon, args in (("zebra", ["-f", "/dev/null"]), ("bfdd", ["-f", str(conf)])):
        subprocess.run(confined(ns, caps, no_new_privs, f"/usr/lib/frr/{daemon}", "-d", *args,
                                "--vty_socket", str(d), "-z", zserv, "-P", "0",
                                "-i", str(d / f"{daemon}.pid")),
                       capture_output=True, text=True, timeout=20, check=False)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        out = subprocess.run(["ip", "netns", "exec", ns, "vtysh", "--vty_socket", str(d), "-c",
                              "show bfd peers json"], capture_output=True, text=True,
                             timeout=10, check=False)
        if out.returncode == 0 and '"192.0.2.2"' in out.stdout:
            return True
        time.sleep(0.2)
    return False


def test_bfdd_and_zebra_run_with_the_manifests_capabilities() -> None:
    need_root()
    need_tool("setpriv", "/usr/lib/frr/bfdd", "/usr/lib/frr/zebra", "vtysh")
    ctx = speaker_context()
    caps = list(ctx["capabilities"]["add"])  # type: ignore[index]
    no_new_privs = ctx.get("allowPrivilegeEscalation") is False
    # not pytest's tmp_path: its parents are 0700, and the daemons run as frr
    with tempfile.TemporaryDirectory(prefix="flatroute-caps-") as tmp, netns_set() as nets:
        os.chmod(tmp, 0o755)
        ns = nets.add("caps")
        assert start_bfd(ns, Path(tmp) / "manifest", caps, no_new_privs), caps
        assert not start_bfd(ns, Path(tmp) / "bare", ["NET_ADMIN", "NET_RAW"], no_new_privs)


def test_the_capability_probe_finds_the_same_under_the_manifests_capabilities() -> None:
    """The probe (seg6, VRF, BPF tried in a namespace of its own) and the eBPF datapath's
    loading need the manifest's BPF, NET_ADMIN and SYS_ADMIN: under exactly its list the probe
    finds what it finds unconfined; without BPF and SYS_ADMIN it cannot load a program."""
    import json
    import sys

    need_root()
    need_tool("setpriv")
    caps = list(speaker_context()["capabilities"]["add"])  # type: ignore[index]
    probe = [sys.executable, "-m", "cli.main", "speaker", "probe", "--json"]

    def checks(*cmd: str) -> dict[str, bool]:
        out = subprocess.run(list(cmd), capture_output=True, text=True, timeout=120,
                             check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
        doc = json.loads(out.stdout)
        return {c["name"]: c["ok"] for c in doc["checks"]}

    with netns_set() as nets:
        ns = nets.add("caps")
        free = checks("ip", "netns", "exec", ns, *probe)
        assert free["bpf.datapath"], free
        assert checks(*confined(ns, caps, True, *probe)) == free
        fewer = [c for c in caps if c not in ("BPF", "SYS_ADMIN")]
        without = checks(*confined(ns, fewer, True, *probe))
        assert not without["bpf.datapath"] and not without["bpf.syscall"]
