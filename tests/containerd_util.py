"""A private containerd for tests: its own root, state and socket, in a namespace the test made.

Debian's containerd 1.6 and its `ctr`. `ctr run --cni` runs the CNI plugins itself, from the
fixed paths /etc/cni/net.d and /opt/cni/bin (go-cni's defaults; ctr has no flag for them), so
each `ctr run` starts in a private mount namespace where those two paths are the test's own
directories: /etc and /opt get a throw-away overlay there, and nothing changes on this machine.
The image is an OCI archive written here from Debian's statically linked busybox, imported with
`ctr image import`: nothing is pulled from a registry.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import signal
import subprocess
import tarfile
import time
from pathlib import Path

BUSYBOX = "/bin/busybox"  # busybox-static
APPLETS = ("sh", "sleep", "ping", "ping6", "ip", "httpd", "nc", "printf", "cat", "echo")
IMAGE = "flatroute.test/busybox:1"

# Runs as `sh -c MOUNTS DIR ctr ...`: /etc/cni/net.d and /opt/cni/bin become DIR/net.d, DIR/bin.
MOUNTS = """set -e
d=$0
mkdir -p "$d/ov/etc" "$d/ov/etc.w" "$d/ov/opt" "$d/ov/opt.w"
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$d/ov/etc,workdir=$d/ov/etc.w" /etc
mount -t overlay overlay -o "lowerdir=/opt,upperdir=$d/ov/opt,workdir=$d/ov/opt.w" /opt
mkdir -p /etc/cni/net.d /opt/cni/bin
mount --bind "$d/net.d" /etc/cni/net.d
mount --bind "$d/bin" /opt/cni/bin
exec "$@"
"""


def _member(tar: tarfile.TarFile, name: str, data: bytes = b"", *, mode: int = 0o644,
            kind: bytes = tarfile.REGTYPE, link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname = kind, mode, link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def _rootfs_layer() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("bin", "etc", "proc", "sys", "dev", "tmp", "run", "www"):
            _member(tar, d, mode=0o755, kind=tarfile.DIRTYPE)
        _member(tar, "bin/busybox", Path(BUSYBOX).read_bytes(), mode=0o755)
        for applet in APPLETS:
            _member(tar, f"bin/{applet}", kind=tarfile.SYMTYPE, link="busybox")
    return buf.getvalue()


def write_image(path: Path, name: str = IMAGE) -> None:
    """An OCI image layout archive (one layer: busybox and its applets) for `ctr image import`."""
    layer = _rootfs_layer()
    packed = gzip.compress(layer, mtime=0)
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers",
                   "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]}}).encode()
    with tarfile.open(path, "w") as tar:
        def blob(data: bytes, media: str) -> dict[str, object]:
            digest = hashlib.sha256(data).hexdigest()
            _member(tar, f"blobs/sha256/{digest}", data)
            return {"mediaType": media, "digest": f"sha256:{digest}", "size": len(data)}

        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": blob(config, "application/vnd.oci.image.config.v1+json"),
            "layers": [blob(packed, "application/vnd.oci.image.layer.v1.tar+gzip")]}).encode()
        entry = blob(manifest, "application/vnd.oci.image.manifest.v1+json")
        entry["annotations"] = {"org.opencontainers.image.ref.name": name}
        entry["platform"] = {"architecture": "amd64", "os": "linux"}
        _member(tar, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        _member(tar, "index.json", json.dumps({"schemaVersion": 2,
                                               "manifests": [entry]}).encode())


class Containerd:
    """containerd in network namespace `ns`, everything of its own under `base`; ctr namespace
    `name` (unique). close() removes every task and container it ran, then stops it."""

    def __init__(self, ns: str, base: Path, name: str) -> None:
        self.ns, self.base, self.name = ns, base, name
        self.sock = base / "containerd.sock"
        self.runs: dict[str, subprocess.Popen[str]] = {}
        (base / "config.toml").write_text(
            f'version = 2\nroot = "{base}/root"\nstate = "{base}/state"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'  # no kubelet here: ctr only
            f'[grpc]\n  address = "{self.sock}"\n'
            f'[ttrpc]\n  address = "{self.sock}.ttrpc"\n'
            '[debug]\n  address = ""\n[metrics]\n  address = ""\n')
        self.log = (base / "containerd.log").open("w")
        # nsenter, not `ip netns exec`: that one mounts a fresh /sys for the namespace, which
        # hides /sys/fs/cgroup from runc ("no cgroup mount found in mountinfo")
        self.proc = subprocess.Popen(["nsenter", f"--net=/run/netns/{ns}", "containerd",
                                      "--config", str(base / "config.toml")], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while self.ctr("version", check=False).returncode != 0:
            assert self.proc.poll() is None, (base / "containerd.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "containerd did not come up"
            time.sleep(0.1)

    def ctr(self, *args: str, check: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["ctr", "-a", str(self.sock), "-n", self.name, *args],
                              capture_output=True, text=True, timeout=timeout, check=False)
        assert not check or proc.returncode == 0, f"ctr {args}: {proc.stderr}"
        return proc

    def import_image(self) -> None:
        write_image(self.base / "image.tar")
        self.ctr("image", "import", str(self.base / "image.tar"))

    def run(self, cid: str, cni_dir: Path, *command: str) -> subprocess.Popen[str]:
        """`ctr run --cni --rm` in the foreground, as it must be: ctr itself runs the CNI ADD
        before the task starts and the DEL after it exits (a detached run never DELs)."""
        ctr = ["ctr", "-a", str(self.sock), "-n", self.name, "run", "--cni", "--rm",
               "--runc-root", str(self.base / "runc"), "--fifo-dir", str(self.base / "fifo"),
               IMAGE, cid, *command]
        proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", MOUNTS,
             str(cni_dir), "ip", "netns", "exec", self.ns, *ctr],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.runs[cid] = proc
        return proc

    def running(self, cid: str) -> bool:
        return any(line.split()[:1] == [cid] and "RUNNING" in line
                   for line in self.ctr("task", "ls").stdout.splitlines())

    def exec(self, cid: str, *command: str,
             timeout: float = 30) -> subprocess.CompletedProcess[str]:
        exec_id = f"x{time.monotonic_ns()}"
        return self.ctr("task", "exec", "--exec-id", exec_id, cid, *command, check=False,
                        timeout=timeout)

    def stop(self, cid: str) -> str:
        """Kill the task; its `ctr run` then DELs and removes it. Return ctr run's output."""
        self.ctr("task", "kill", "-s", "KILL", cid, check=False)
        out, _ = self.runs.pop(cid).communicate(timeout=60)
        return out

    def remove(self, cid: str) -> None:
        self.ctr("task", "rm", "-f", cid, check=False)
        self.ctr("c", "rm", cid, check=False)

    def containers(self) -> list[str]:
        return [line.split()[0] for line in self.ctr("c", "ls", "-q").stdout.splitlines()]

    def close(self) -> None:
        for cid, proc in list(self.runs.items()):
            self.ctr("task", "kill", "-s", "KILL", cid, check=False)
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
        self.runs.clear()
        if self.proc.poll() is None:
            for cid in self.containers():
                self.remove(cid)
            with contextlib.suppress(Exception):
                self.ctr("image", "rm", IMAGE, check=False)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        self._kill_shims()

    def _kill_shims(self) -> None:
        """A shim outlives containerd if its task was not deleted: end ours, by pid."""
        needle = f"-address {self.sock}".encode()
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if b"containerd-shim" in cmdline and needle in cmdline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
