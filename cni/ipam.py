"""The plugin's IPAM store: locked files under the data directory, in host-local's manner.

Implements the `cni.store.Store` contract; the allocation policy lives in `cni.alloc`.

Layout under <dataDir>/<network name>/:
    lock                 taken with a POSIX record lock (os.lockf, i.e. fcntl F_SETLK) for
                         every change
    ip/<address>         one reservation, created with O_CREAT|O_EXCL;
                         holds "containerid\\nifname\\n"
    att/<host veth>      one attachment: "containerid\\nifname\\n" then one address per line;
                         created O_EXCL too, which is what detects a duplicate ADD
    last.<v>             where the last search for family v stopped (a hint, never the truth)

The O_EXCL create of ip/<address> is what makes an address unique; the lock keeps the
attachment record and the reservations consistent with each other. POSIX record locks belong to
the process, so a second `with store:` in the same process would not wait and closing it would
drop the first: the lock is not re-entrant, and entering it twice is refused.
"""

from __future__ import annotations

import errno
import os
import time

from cni.errors import DUPLICATE, INTERNAL, IO_ERROR, TRY_AGAIN, CniError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: `import typing` costs ~20 ms of start-up
if TYPE_CHECKING:
    from cni.store import Attachment, Owner

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


class FileStore:
    def __init__(self, data_dir: str, network: str, lock_timeout: float = 10.0) -> None:
        self.root = os.path.join(data_dir, network)
        self.where = self.root
        self.ip_dir = os.path.join(self.root, "ip")
        self.att_dir = os.path.join(self.root, "att")
        self.lock_timeout = lock_timeout
        self._lock_fd = -1

    # -- lock -------------------------------------------------------------------------------
    def __enter__(self) -> FileStore:
        if self._lock_fd >= 0:
            raise CniError(INTERNAL, "the IPAM lock is already held by this process")
        try:
            fd = self._open_lock()
        except FileNotFoundError:
            self._makedirs()
            fd = self._open_lock()
        except OSError as exc:
            raise CniError(IO_ERROR, f"cannot open the IPAM lock in {self.root}",
                           exc.strerror or "") from None
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                os.lockf(fd, os.F_TLOCK, 0)
                break
            except OSError as exc:
                if exc.errno not in (errno.EACCES, errno.EAGAIN):
                    os.close(fd)
                    raise CniError(IO_ERROR, "cannot lock the IPAM store",
                                   exc.strerror or "") from None
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise CniError(TRY_AGAIN, "timed out waiting for the IPAM lock",
                                   f"{self.root}/lock held for more than "
                                   f"{self.lock_timeout:g}s") from None
                time.sleep(0.001)
        self._lock_fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing drops the record lock
            self._lock_fd = -1

    def _open_lock(self) -> int:
        return os.open(os.path.join(self.root, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                       0o600)

    def _makedirs(self) -> None:
        try:
            os.makedirs(self.ip_dir, 0o700, exist_ok=True)
            os.makedirs(self.att_dir, 0o700, exist_ok=True)
        except OSError as exc:
            raise CniError(IO_ERROR, f"cannot create the data directory {self.root}",
                           exc.strerror or "") from None

    def check_usable(self) -> None:
        """Raise OSError unless the directories exist (made if need be) and are writable."""
        os.makedirs(self.ip_dir, 0o700, exist_ok=True)
        os.makedirs(self.att_dir, 0o700, exist_ok=True)
        os.close(self._open_lock())
        if not os.access(self.ip_dir, os.W_OK) or not os.access(self.att_dir, os.W_OK):
            raise PermissionError(errno.EACCES, "not writable")

    # -- attachments ------------------------------------------------------------------------
    def create_attachment(self, key: str, cid: str, ifname: str) -> None:
        """O_EXCL create: a duplicate ADD fails here, before any change."""
        path = os.path.join(self.att_dir, key)
        try:
            fd = os.open(path, _CREATE, 0o600)
        except FileExistsError:
            raise CniError(DUPLICATE, f"container {cid} already has interface {ifname}",
                           "DEL it first; a second ADD would change nothing") from None
        except FileNotFoundError:
            self._makedirs()
            return self.create_attachment(key, cid, ifname)
        except OSError as exc:
            raise CniError(IO_ERROR, f"cannot write {path}", exc.strerror or "") from None
        _write_close(fd, f"{cid}\n{ifname}\n", path)
        return None

    def add_addresses(self, key: str, addresses: list[str]) -> None:
        path = os.path.join(self.att_dir, key)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        except OSError as exc:
            raise CniError(IO_ERROR, f"cannot write {path}", exc.strerror or "") from None
        _write_close(fd, "".join(f"{a}\n" for a in addresses), path)

    def read_attachment(self, key: str) -> Attachment | None:
        try:
            with open(os.path.join(self.att_dir, key), encoding="utf-8") as fh:
                lines = fh.read().split("\n")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CniError(IO_ERROR, f"cannot read attachment {key}", exc.strerror or "") from None
        if len(lines) < 2:
            return None
        return lines[0], lines[1], [x for x in lines[2:] if x]

    def attachments(self) -> dict[str, Attachment]:
        out: dict[str, Attachment] = {}
        for key in _listdir(self.att_dir):
            rec = self.read_attachment(key)
            if rec is not None:
                out[key] = rec
        return out

    def remove_attachment(self, key: str) -> None:
        _unlink(os.path.join(self.att_dir, key))

    # -- reservations -----------------------------------------------------------------------
    def try_reserve(self, address: str, cid: str, ifname: str) -> bool:
        path = os.path.join(self.ip_dir, address)
        try:
            fd = os.open(path, _CREATE, 0o600)
        except FileExistsError:
            return False
        except FileNotFoundError:
            self._makedirs()
            return self.try_reserve(address, cid, ifname)
        except OSError as exc:
            raise CniError(IO_ERROR, f"cannot write a reservation in {self.ip_dir}",
                           exc.strerror or "") from None
        _write_close(fd, f"{cid}\n{ifname}\n", path)
        return True

    def owner(self, address: str) -> Owner | None:
        try:
            with open(os.path.join(self.ip_dir, address), encoding="utf-8") as fh:
                lines = fh.read().split("\n")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CniError(IO_ERROR, f"cannot read reservation {address}",
                           exc.strerror or "") from None
        return (lines[0], lines[1] if len(lines) > 1 else "")

    def reservations(self) -> dict[str, Owner]:
        out: dict[str, Owner] = {}
        for name in _listdir(self.ip_dir):
            owner = self.owner(name)
            if owner is not None:
                out[name] = owner
        return out

    def remove_reservation(self, address: str) -> None:
        _unlink(os.path.join(self.ip_dir, address))

    # -- the round-robin hint ---------------------------------------------------------------
    def last_reserved(self, version: int) -> str | None:
        try:
            with open(os.path.join(self.root, f"last.{version}"), encoding="ascii") as fh:
                return fh.read().strip() or None
        except (OSError, ValueError):
            return None

    def set_last_reserved(self, version: int, address: str) -> None:
        try:
            fd = os.open(os.path.join(self.root, f"last.{version}"),
                         os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, address.encode())
            finally:
                os.close(fd)
        except OSError:
            pass  # only a hint


def _write_close(fd: int, text: str, path: str) -> None:
    try:
        os.write(fd, text.encode())
    except OSError as exc:
        raise CniError(IO_ERROR, f"cannot write {path}", exc.strerror or "") from None
    finally:
        os.close(fd)


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise CniError(IO_ERROR, f"cannot list {path}", exc.strerror or "") from None


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise CniError(IO_ERROR, f"cannot remove {path}", exc.strerror or "") from None
