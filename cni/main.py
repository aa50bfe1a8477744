"""flatroute-cni: the skel-style edge. Environment and stdin in, result or error object out.

Every failure becomes the spec's error object on stdout with exit status 1; nothing else is
ever printed (no traceback). Imports stay lean: see docs/cni.md for the start-up budget.
"""

from __future__ import annotations

import os
import sys

from cni import jsonlite
from cni.config import LATEST, SUPPORTED_VERSIONS, check_version, parse_conf, parse_env, version_of
from cni.errors import DECODE, INTERNAL, IO_ERROR, CniError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: `import typing` costs ~20 ms of start-up
if TYPE_CHECKING:
    from typing import Any, BinaryIO, TextIO

    from cni.config import Env, NetConf


def run(environ: dict[str, str] | os._Environ[str], stdin: BinaryIO, stdout: TextIO) -> int:
    version = LATEST
    try:
        raw = stdin.read()
        doc: Any = None
        decode_error = ""
        try:
            doc = jsonlite.loads(raw.decode("utf-8"))
            if not isinstance(doc, dict):
                decode_error = "the network configuration must be a JSON object"
        except (UnicodeDecodeError, ValueError) as exc:
            decode_error = str(exc)
        if not decode_error:
            version = version_of(doc)
        if environ.get("CNI_COMMAND", "") == "VERSION":
            _emit(stdout, _version(doc, raw, decode_error))
            return 0
        env = parse_env(environ)
        if decode_error:
            raise CniError(DECODE, "cannot decode the network configuration", decode_error)
        if version not in SUPPORTED_VERSIONS:
            version = LATEST
            check_version(doc.get("cniVersion"))
        _dispatch(env, parse_conf(doc, raw), stdout)
        return 0
    except CniError as exc:
        _emit(stdout, exc.to_dict(version))
        return 1
    except OSError as exc:
        _emit(stdout, CniError(IO_ERROR, "I/O error", str(exc)).to_dict(version))
        return 1
    except Exception as exc:
        _emit(stdout, CniError(INTERNAL, "internal error",
                               f"{type(exc).__name__}: {exc}").to_dict(version))
        return 1


def _version(doc: Any, raw: bytes, decode_error: str) -> dict[str, Any]:
    if decode_error and raw.strip():
        raise CniError(DECODE, "cannot decode the network configuration", decode_error)
    asked = version_of(doc) if not decode_error else LATEST
    if asked not in SUPPORTED_VERSIONS:
        asked = LATEST
    return {"cniVersion": asked, "supportedVersions": list(SUPPORTED_VERSIONS)}


def _dispatch(env: Env, conf: NetConf, stdout: TextIO) -> None:
    from cni import verbs

    if env.command == "ADD":
        _emit(stdout, verbs.cmd_add(env, conf))
    elif env.command == "DEL":
        verbs.cmd_del(env, conf)
    elif env.command == "CHECK":
        verbs.cmd_check(env, conf)
    elif env.command == "GC":
        verbs.cmd_gc(env, conf)
    else:
        verbs.cmd_status(env, conf)


def _emit(stdout: TextIO, doc: dict[str, Any]) -> None:
    try:
        stdout.write(jsonlite.dumps(doc))
        stdout.write("\n")
        stdout.flush()
    except (OSError, ValueError):
        pass


def main() -> None:
    code = run(os.environ, sys.stdin.buffer, sys.stdout)
    sys.stdout.flush()
    os._exit(code)  # skip interpreter teardown: a few ms per pod


if __name__ == "__main__":
    main()
