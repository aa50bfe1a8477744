"""Writing rendered files: atomically, only when changed; and diffing against a directory."""

from __future__ import annotations

import difflib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from flatroute.errors import AdapterError
from render.common import RenderedFile


def relpath(f: RenderedFile, by_platform: bool) -> str:
    return f"{f.platform}/{f.name}" if by_platform else f.name


def _mode(f: RenderedFile, secret: bool) -> int:
    if f.name.endswith(".sh"):
        return 0o700 if secret else 0o755
    return 0o600 if secret else 0o644


def write_files(files: Iterable[RenderedFile], out: Path, *, by_platform: bool,
                secret: bool = False) -> list[Path]:
    """Write each file unless it already holds exactly this text; return the paths written.

    Each write goes to a temporary file in the same directory, is flushed to disk and renamed
    over the target, so a reader (FRR reload, the lab) never sees half a file.
    """
    written = []
    for f in files:
        path = out / relpath(f, by_platform)
        data = f.text.encode()
        try:
            if path.is_file() and path.read_bytes() == data:
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.chmod(tmp, _mode(f, secret))
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise AdapterError(f"cannot write {path}: {exc.strerror}") from exc
        written.append(path)
    return written


def diff_files(files: Iterable[RenderedFile], previous: Path, *, by_platform: bool) -> str:
    """Unified diff from the files under `previous` to this render (like `diff -ruN`).

    Files under `previous` that this render no longer produces show as removed. Hidden files
    (temporaries) are ignored.
    """
    new = {relpath(f, by_platform): f.text for f in files}
    old: dict[str, str] = {}
    if previous.is_dir():
        for p in sorted(previous.rglob("*")):
            rel = p.relative_to(previous).as_posix()
            if p.is_file() and not any(part.startswith(".") for part in rel.split("/")):
                old[rel] = p.read_text(encoding="utf-8", errors="replace")
    elif previous.exists():
        raise AdapterError(f"--diff {previous}: not a directory")
    out: list[str] = []
    for rel in sorted(set(new) | set(old)):
        a, b = old.get(rel), new.get(rel)
        if a == b:
            continue
        out += difflib.unified_diff(
            (a or "").splitlines(keepends=True), (b or "").splitlines(keepends=True),
            fromfile=f"a/{rel}" if a is not None else "/dev/null",
            tofile=f"b/{rel}" if b is not None else "/dev/null")
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n"
    return "".join(out)
