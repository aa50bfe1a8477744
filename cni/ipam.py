"""Built-in IPAM: a locked file store of reservations, in host-local's manner.

Layout under <dataDir>/<network name>/:
    lock                 taken with a POSIX record lock (os.lockf, i.e. fcntl F_SETLK) for
                         every change
    ip/<address>         one reservation, created with O_CREAT|O_EXCL;
                         holds "containerid\\nifname\\n"
    att/<host veth>      one attachment: "containerid\\nifname\\n" then one address per line;
                         created O_EXCL too, which is what detects a duplicate ADD
    last.<v>             where the last search for family v stopped (a hint, never the truth)

The O_EXCL create of ip/<address> is what makes an address unique; the lock keeps the
attachment record and the reservations consistent with each other.
"""

from __future__ import annotations

import errno
import os
import time

from cni import addr
from cni.config import Range
from cni.errors import DUPLICATE, EXHAUSTED, IO_ERROR, TRY_AGAIN, CniError


class Store:
    def __init__(self, data_dir: str, network: str, lock_timeout: float = 10.0) -> None:
        self.root = os.path.join(data_dir, network)
        self.ip_dir = os.path.join(self.root, "ip")
        self.att_dir = os.path.join(self.root, "att")
        self.lock_timeout = lock_timeout
        self._lock_fd = -1

    # -- lock -------------------------------------------------------------------------------
    def __enter__(self) -> Store:
        try:
            fd = os.open(os.path.join(self.root, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                         0o600)
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

    def _makedirs(self) -> None:
        try:
            os.makedirs(self.ip_dir, 0o700, exist_ok=True)
            os.makedirs(self.att_dir, 0o700, exist_ok=True)
        except OSError as exc:
            raise CniError(IO_ERROR, f"cannot create the data directory {self.root}",
                           exc.strerror or "") from None

    def _open_lock(self) -> int:
        try:
            return os.open(os.path.join(self.root, "lock"),
                           os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise CniError(IO_ERROR, f"cannot open the IPAM lock in {self.root}",
                           exc.strerror or "") from None

    # -- attachments ------------------------------------------------------------------------
    def create_attachment(self, key: str, cid: str, ifname: str) -> int:
        """O_EXCL create; returns the open fd. A duplicate ADD fails here, before any change."""
        path = os.path.join(self.att_dir, key)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            raise CniError(DUPLICATE, f"container {cid} already has interface {ifname}",
                           "DEL it first; a second ADD would change nothing") from None
        except FileNotFoundError:
            self._makedirs()
            return self.create_attachment(key, cid, ifname)
        except OSError as exc:
            raise CniError(IO_ERROR, f"cannot write {path}", exc.strerror or "") from None
        os.write(fd, f"{cid}\n{ifname}\n".encode())
        return fd

    def read_attachment(self, key: str) -> tuple[str, str, list[str]] | None:
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

    def attachments(self) -> dict[str, tuple[str, str, list[str]]]:
        out: dict[str, tuple[str, str, list[str]]] = {}
        for key in _listdir(self.att_dir):
            rec = self.read_attachment(key)
            if rec is not None:
                out[key] = rec
        return out

    def remove_attachment(self, key: str) -> None:
        _unlink(os.path.join(self.att_dir, key))

    # -- reservations -----------------------------------------------------------------------
    def reserve(self, rset: list[Range], cid: str, ifname: str) -> str:
        """Reserve the next free address of a range set, round-robin from the last one."""
        version = rset[0].version
        hint_path = os.path.join(self.root, f"last.{version}")
        start_at = -1
        try:
            with open(hint_path, encoding="ascii") as fh:
                _, start_at = addr.parse_ip(fh.read().strip())
        except (OSError, ValueError):
            pass
        content = f"{cid}\n{ifname}\n".encode()
        # Walk every range once, starting just after the hint.
        order = sorted(rset, key=lambda r: r.start)
        first = 0
        for i, r in enumerate(order):
            if start_at in r:
                first = i
                break
        else:
            start_at = -1
        for n in range(len(order) + 1):
            r = order[(first + n) % len(order)]
            if n == 0 and start_at >= 0:
                lo, hi = start_at + 1, r.end
            elif n == len(order):
                if start_at < 0:
                    break
                lo, hi = r.start, start_at  # wrap around inside the first range
            else:
                lo, hi = r.start, r.end
            for value in range(lo, hi + 1):
                text = addr.fmt(version, value)
                try:
                    fd = os.open(os.path.join(self.ip_dir, text),
                                 os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                except FileExistsError:
                    continue
                except OSError as exc:
                    raise CniError(IO_ERROR, f"cannot write a reservation in {self.ip_dir}",
                                   exc.strerror or "") from None
                try:
                    os.write(fd, content)
                finally:
                    os.close(fd)
                self._write_hint(hint_path, text)
                return text
        ranges = ", ".join(r.subnet for r in rset)
        raise CniError(EXHAUSTED, f"no free address left in {ranges}",
                       f"{self.ip_dir} holds a reservation for every address")

    def _write_hint(self, path: str, text: str) -> None:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, text.encode())
            finally:
                os.close(fd)
        except OSError:
            pass  # only a hint

    def owner(self, address: str) -> tuple[str, str] | None:
        try:
            with open(os.path.join(self.ip_dir, address), encoding="utf-8") as fh:
                lines = fh.read().split("\n")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CniError(IO_ERROR, f"cannot read reservation {address}",
                           exc.strerror or "") from None
        return (lines[0], lines[1] if len(lines) > 1 else "")

    def reservations(self) -> dict[str, tuple[str, str]]:
        out: dict[str, tuple[str, str]] = {}
        for name in _listdir(self.ip_dir):
            owner = self.owner(name)
            if owner is not None:
                out[name] = owner
        return out

    def release(self, address: str, cid: str, ifname: str) -> bool:
        """Remove a reservation if (and only if) it belongs to cid/ifname."""
        if self.owner(address) == (cid, ifname):
            _unlink(os.path.join(self.ip_dir, address))
            return True
        return False

    def release_all(self, key: str, cid: str, ifname: str) -> list[str]:
        """DEL: release what the attachment record lists, then anything else of cid/ifname."""
        rec = self.read_attachment(key)
        released: list[str] = []
        if rec is not None and rec[:2] == (cid, ifname):
            released = [a for a in rec[2] if self.release(a, cid, ifname)]
            self.remove_attachment(key)
        # A crash between two writes of an ADD can leave a reservation the record misses.
        if rec is None or len(released) != len(rec[2]):
            for address, owner in self.reservations().items():
                if owner == (cid, ifname):
                    _unlink(os.path.join(self.ip_dir, address))
                    released.append(address)
        return released


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
