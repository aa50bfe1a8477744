"""The OCI image, built by scripts/build-image and started by a real OCI runtime (runc).

The image is built once per run (about a minute; FLATROUTE_IMAGE=<archive> reuses one), unpacked
with umoci into a runtime bundle, and each check starts it with `runc run`: the version, the
speaker's help, the capability probe under exactly the capabilities deploy/speaker.yaml grants,
what the image must hold. Then every container in deploy/ is checked against it: the command
exists in the image, the flags parse with the real CLI, the image paths they name exist, and the
capabilities are real ones.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

import flatroute
from tests.netns_util import need_root, need_tool, unique

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
OUR_IMAGE = "ghcr.io/flatroute/flatroute"
#: every Linux capability name (include/uapi/linux/capability.h, up to 6.x)
LINUX_CAPS = frozenset({
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE"
})


@dataclass(frozen=True)
class Image:
    archive: Path
    layout: Path
    bundle: Path
    state: Path

    @property
    def rootfs(self) -> Path:
        return self.bundle / "rootfs"

    def config(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads((self.bundle / "config.json.orig").read_text())
        return doc

    def oci_config(self) -> dict[str, Any]:
        """The image's own config (Entrypoint, Cmd, Env), from the OCI layout."""
        def blob(digest: str) -> Any:
            algo, hexa = digest.split(":", 1)
            return json.loads((self.layout / "blobs" / algo / hexa).read_text())

        index = json.loads((self.layout / "index.json").read_text())
        manifest = blob(index["manifests"][0]["digest"])
        doc: dict[str, Any] = blob(manifest["config"]["digest"])["config"]
        return doc

    def run(self, args: list[str], caps: list[str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Start the image with `runc run`: `args` replace the image's command, after its
        entrypoint unless args[0] is an absolute path; `caps` (names without CAP_) replace
        the runtime's default capabilities."""
        cfg = self.config()
        entry = cfg["process"]["args"][:1]
        cfg["process"]["args"] = args if args[0].startswith("/") else [*entry, *args]
        cfg["process"]["terminal"] = False
        if caps is not None:
            names = [f"CAP_{c}" for c in caps]
            for kind in list(cfg["process"]["capabilities"]):
                cfg["process"]["capabilities"][kind] = names
        (self.bundle / "config.json").write_text(json.dumps(cfg))
        cid = unique("frimg")
        try:
            return subprocess.run(["runc", "--root", str(self.state), "run", "--bundle",
                                   str(self.bundle), cid], capture_output=True, text=True,
                                  timeout=timeout, check=False, stdin=subprocess.DEVNULL)
        finally:
            subprocess.run(["runc", "--root", str(self.state), "delete", "--force", cid],
                           capture_output=True, check=False)


@pytest.fixture(scope="module")
def image() -> Iterator[Image]:
    need_root()
    need_tool("runc", "umoci", "mmdebstrap", "buildah", "skopeo")
    work = Path(tempfile.mkdtemp(prefix="flatroute-image-test-", dir="/var/tmp"))
    try:
        given = os.environ.get("FLATROUTE_IMAGE")
        archive = Path(given) if given else work / "flatroute.oci.tar"
        if not given:
            build = subprocess.run([str(REPO / "scripts" / "build-image"), "--out", str(archive)],
                                   capture_output=True, text=True, timeout=900, check=False)
            assert build.returncode == 0, f"build-image failed:\n{build.stdout}\n{build.stderr}"
            assert "digest: sha256:" in build.stdout, build.stdout
        layout = work / "layout"
        layout.mkdir()
        subprocess.run(["tar", "-xf", str(archive), "-C", str(layout)], check=True)
        index = json.loads((layout / "index.json").read_text())
        tag = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
        bundle = work / "bundle"
        unpack = subprocess.run(["umoci", "unpack", "--image", f"{layout}:{tag}", str(bundle)],
                                capture_output=True, text=True, timeout=300, check=False)
        assert unpack.returncode == 0, unpack.stderr
        shutil.copy(bundle / "config.json", bundle / "config.json.orig")
        state = work / "runc"
        state.mkdir()
        yield Image(archive, layout, bundle, state)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_the_image_says_its_version(image: Image) -> None:
    res = image.run(["--version"])
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"flatroute {flatroute.__version__}"


def test_the_speaker_runs_in_the_image(image: Image) -> None:
    res = image.run(["speaker", "run", "--help"])
    assert res.returncode == 0, res.stderr
    assert "--kubernetes" in res.stdout and "--bpf-dir" in res.stdout


def test_the_image_holds_every_part(image: Image) -> None:
    root = image.rootfs
    assert (root / "usr/lib/frr/bfdd").is_file(), "FRR's bfdd, which the speaker runs"
    res = image.run(["/usr/bin/python3", "-c",
                     "import exabgp, pyroute2, kubernetes, controller, speaker, cni; "
                     "import speaker.bpf.build as b; print(b.OBJECT.is_file())"])
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "True", "the eBPF datapath object is in the image"
    client = (root / "usr/lib/flatroute/flatroute-cni").read_bytes()
    from cni.install import is_static_client

    assert is_static_client(client), "the CNI client is statically linked"
    res = image.run(["cni", "serve", "--help"])
    assert res.returncode == 0, res.stderr


def _speaker_caps() -> list[str]:
    (ds,) = [d for d in yaml.safe_load_all((DEPLOY / "speaker.yaml").read_text())
             if d and d["kind"] == "DaemonSet"]
    (c,) = [c for c in ds["spec"]["template"]["spec"]["containers"] if c["name"] == "speaker"]
    caps: list[str] = c["securityContext"]["capabilities"]["add"]
    return caps


def test_the_probe_in_the_image_with_the_daemonsets_capabilities_sees_the_hosts_kernel(
        image: Image) -> None:
    """Under the capabilities speaker.yaml gives the speaker, the probe inside the image finds
    what the same probe finds on the host: same kernel, so any difference is a capability the
    manifest lacks or a part the image lacks."""
    res = image.run(["speaker", "probe", "--json"], caps=_speaker_caps())
    assert res.returncode == 0, res.stderr
    inside = json.loads(res.stdout)
    host = json.loads(subprocess.run([shutil.which("flatroute") or "flatroute", "speaker",
                                      "probe", "--json"], capture_output=True, text=True,
                                     check=True, timeout=120).stdout)
    assert {c["name"]: c["ok"] for c in inside["checks"]} == \
        {c["name"]: c["ok"] for c in host["checks"]}
    assert inside["bpfSrv6"], "the eBPF datapath loads from the image"


# -- deploy/ against the image --------------------------------------------------------------------
def _containers() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(DEPLOY.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            spec = ((doc or {}).get("spec") or {}).get("template", {}).get("spec")
            if not spec:
                continue
            for c in [*spec.get("initContainers", []), *spec.get("containers", [])]:
                yield f"{path.name}:{doc['metadata']['name']}/{c['name']}", c


def _mounted(path: str, c: dict[str, Any]) -> bool:
    return any(path == m["mountPath"] or path.startswith(m["mountPath"].rstrip("/") + "/")
               for m in c.get("volumeMounts", []))


def _in_image(image: Image, path: str) -> bool:
    return os.path.lexists(image.rootfs / path.lstrip("/"))


def _command_line(image: Image, c: dict[str, Any]) -> list[str]:
    # Kubernetes: `command` replaces the image's Entrypoint, `args` its Cmd
    cfg = image.oci_config()
    command = c.get("command", cfg.get("Entrypoint") or [])
    args = c.get("args", [] if "command" in c else cfg.get("Cmd") or [])
    return [*command, *args]


def _problems(image: Image, where: str, c: dict[str, Any]) -> list[str]:
    from cli.main import build_parser

    out: list[str] = []
    line = _command_line(image, c)
    exe = line[0]
    found = exe if exe.startswith("/") else next(
        (f"{d}/{exe}" for d in ("/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin")
         if _in_image(image, f"{d}/{exe}")), None)
    if found is None or not _in_image(image, found):
        out.append(f"{where}: command {exe!r} is not in the image")
    if Path(exe).name == "flatroute":
        try:
            build_parser().parse_args(line[1:])
        except SystemExit:
            out.append(f"{where}: the flatroute CLI refuses {line[1:]}")
        for arg in line[1:]:
            value = arg.split("=", 1)[1] if arg.startswith("--") and "=" in arg else arg
            if value.startswith("/") and not _mounted(value, c) and not _in_image(image, value):
                out.append(f"{where}: {value} is neither in the image nor a mounted volume")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        cmd = (c.get(probe) or {}).get("exec", {}).get("command")
        if cmd:
            out += _problems(image, f"{where} {probe}", {"command": cmd,
                                                        "volumeMounts": c.get("volumeMounts", [])})
    caps = (c.get("securityContext") or {}).get("capabilities") or {}
    for name in [*caps.get("add", []), *caps.get("drop", [])]:
        if name != "ALL" and name not in LINUX_CAPS:
            out.append(f"{where}: {name} is not a Linux capability")
    return out


def test_every_container_in_deploy_matches_the_image(image: Image) -> None:
    problems: list[str] = []
    seen = 0
    for where, c in _containers():
        if not str(c.get("image", "")).startswith(OUR_IMAGE):
            continue
        assert c["image"].endswith(f":{flatroute.__version__}"), f"{where}: {c['image']}"
        problems += _problems(image, where, c)
        seen += 1
    assert seen >= 3, "the controller, the speaker and the CNI containers"
    assert problems == []


def test_the_check_catches_a_manifest_that_names_what_the_image_lacks(image: Image) -> None:
    bad = {"args": ["speaker", "run", "--no-such-flag"],
           "securityContext": {"capabilities": {"add": ["NET_ADMINS"]}},
           "command": ["flatroute", "cni", "install", "--client-binary=/usr/lib/nothing/here"]}
    problems = _problems(image, "bad", bad)
    assert any("/usr/lib/nothing/here" in p for p in problems)
    assert any("NET_ADMINS" in p for p in problems)
    worse = {"command": ["flatroute", "speaker", "run", "--no-such-flag"]}
    assert any("refuses" in p for p in _problems(image, "worse", worse))
    assert any("not in the image" in p for p in _problems(image, "x", {"command": ["kubectl"]}))
