"""Run a delegated plugin (ipam.type other than ours) the way the spec says.

The delegate gets the same environment and the same network configuration on stdin; its
result, or its error object, comes back unchanged. posix_spawn and pipes, no `subprocess`
(whose import costs more than the delegate's run).
"""

from __future__ import annotations

import os

from cni import jsonlite
from cni.errors import DECODE, PLUGIN_NOT_FOUND, CniError, DelegateError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: `import typing` costs ~20 ms of start-up
if TYPE_CHECKING:
    from typing import Any


def find(plugin: str, path: tuple[str, ...]) -> str:
    for directory in path:
        candidate = os.path.join(directory, plugin)
        if os.access(candidate, os.X_OK) and os.path.isfile(candidate):
            return candidate
    raise CniError(PLUGIN_NOT_FOUND, f"IPAM plugin {plugin!r} not found in CNI_PATH",
                   ":".join(path))


def supports(plugin: str, path: tuple[str, ...], version: str) -> bool:
    """Ask the delegate (VERSION) whether it speaks `version`: GC and STATUS need 1.1.0."""
    try:
        doc = run(plugin, path, "VERSION", b'{"cniVersion": "%s"}' % version.encode())
    except CniError:
        return False
    return isinstance(doc, dict) and version in (doc.get("supportedVersions") or ())


def run(plugin: str, path: tuple[str, ...], command: str, stdin: bytes,
        env_overrides: dict[str, str] | None = None) -> dict[str, Any] | None:
    """Exec the delegate; return its decoded result (None when it printed nothing)."""
    exe = find(plugin, path)
    env = dict(os.environ)
    env["CNI_COMMAND"] = command
    if env_overrides:
        env.update(env_overrides)
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    try:
        pid = os.posix_spawn(exe, [exe], env, file_actions=[
            (os.POSIX_SPAWN_DUP2, in_r, 0), (os.POSIX_SPAWN_DUP2, out_w, 1),
            (os.POSIX_SPAWN_CLOSE, in_w), (os.POSIX_SPAWN_CLOSE, out_r)])
    finally:
        os.close(in_r)
        os.close(out_w)
    try:
        view = memoryview(stdin)
        while view:
            view = view[os.write(in_w, view):]
    except BrokenPipeError:
        pass
    finally:
        os.close(in_w)
    chunks = []
    while True:
        chunk = os.read(out_r, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(out_r)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    text = b"".join(chunks).decode("utf-8", "replace").strip()
    doc: Any = None
    if text:
        try:
            doc = jsonlite.loads(text)
        except ValueError:
            doc = None
    if code != 0:
        if isinstance(doc, dict) and isinstance(doc.get("code"), int):
            raise DelegateError(doc["code"], str(doc.get("msg", f"{plugin} failed")),
                                str(doc.get("details", "")))
        raise DelegateError(999, f"{plugin} {command} exited with status {code}", text[:500])
    if not text:
        return None
    if not isinstance(doc, dict):
        raise CniError(DECODE, f"{plugin} {command} printed something that is not a JSON object",
                       text[:500])
    return doc
