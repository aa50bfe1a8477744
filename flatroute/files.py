"""Files flatroute writes for others to read (node states, node files, configs, status):
whole or not at all, and only when the content changed."""

from __future__ import annotations

import contextlib
import os
import tempfile

#: Files flatroute publishes are for other processes (CNI plugin, bfdd, operators) to read.
PUBLIC = 0o644
#: Files holding secrets (the ExaBGP config with MD5 passwords) stay the owner's.
PRIVATE = 0o600


def write_atomic(path: str, text: str, mode: int = PUBLIC) -> bool:
    """Write text to path via a temporary file and rename; return False if unchanged.

    The file gets `mode` whatever the umask (mkstemp alone would leave every file 0600), and
    an unchanged file whose mode differs is put right without being rewritten."""
    try:
        with open(path, encoding="utf-8") as fh:
            if fh.read() == text:
                if os.stat(fh.fileno()).st_mode & 0o7777 != mode:
                    os.chmod(fh.fileno(), mode)
                return False
    except OSError:
        pass
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            os.fchmod(fd, mode)
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return True
