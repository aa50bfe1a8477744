"""Build speaker/bpf/srv6.bpf.o from srv6.bpf.c with clang, against a vmlinux.h made from BTF.

`python3 -m speaker.bpf.build` builds (when the object is missing or older than the source) and
prints the object's path. The object and vmlinux.h are build products, never committed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from flatroute.errors import AdapterError

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "srv6.bpf.c"
OBJECT = HERE / "srv6.bpf.o"
BUILD_DIR = HERE / "build"
VMLINUX_BTF = "/sys/kernel/btf/vmlinux"
HINT = "install clang and bpftool: scripts/install-deps"



def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise AdapterError(f"{name} not found: {HINT}")
    return path


def _run(cmd: list[str], what: str) -> subprocess.CompletedProcess[bytes]:
    try:
        res = subprocess.run(cmd, capture_output=True, check=False, timeout=120)
    except OSError as e:
        raise AdapterError(f"{what} could not run ({e}): {HINT}") from e
    if res.returncode != 0:
        err = res.stderr.decode(errors="replace").strip()
        raise AdapterError(f"{what} failed (exit {res.returncode}): {err}")
    return res


def vmlinux_h(build_dir: Path = BUILD_DIR) -> Path:
    """vmlinux.h for this kernel, generated once per BTF (rebuilt when the BTF is newer)."""
    header = build_dir / "vmlinux.h"
    if not os.path.exists(VMLINUX_BTF):
        raise AdapterError(f"{VMLINUX_BTF} is missing: the kernel has no BTF")
    if header.exists() and header.stat().st_mtime >= os.stat(VMLINUX_BTF).st_mtime:
        return header
    bpftool = _tool("bpftool")
    res = _run([bpftool, "btf", "dump", "file", VMLINUX_BTF, "format", "c"], "bpftool btf dump")
    build_dir.mkdir(parents=True, exist_ok=True)
    tmp = header.with_suffix(f".h.{os.getpid()}")
    tmp.write_bytes(res.stdout)
    os.replace(tmp, header)
    return header


def build(force: bool = False) -> Path:
    """Compile the tc programs; returns the object's path. Rebuilds when the .o is older."""
    if (not force and OBJECT.exists()
            and OBJECT.stat().st_mtime >= SOURCE.stat().st_mtime):
        return OBJECT
    clang = _tool("clang")
    header = vmlinux_h()
    tmp = OBJECT.with_suffix(f".o.{os.getpid()}")
    cmd = [clang, "-O2", "-g", "-target", "bpf", "-Wall",
           f"-I{header.parent}", "-c", str(SOURCE), "-o", str(tmp)]
    try:
        _run(cmd, "clang")
        os.replace(tmp, OBJECT)
    finally:
        tmp.unlink(missing_ok=True)
    return OBJECT


def main() -> int:
    try:
        print(build(force="--force" in sys.argv[1:]))
    except AdapterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
