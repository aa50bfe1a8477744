"""The eBPF SRv6 datapath adapter: load and pin the tc programs, attach them, reconcile maps.

Everything of ours lives under one directory of a bpffs (`pin_dir`): maps under pin_dir/maps,
programs under pin_dir/progs. A restarted speaker finds them there and keeps using the same maps,
so traffic never stops. On interfaces, our filter is the cls_bpf filter at tc.FILTER_PRIO on the
clsact ingress hook whose name starts with "flr_" (the name carries the program id,
"flr_encap:<id>"): nothing else is ever changed or removed. The tc side is speaker/bpf/tc.py.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from flatroute.errors import AdapterError
from flatroute.logging import get_logger
from speaker.bpf import libbpf, tc
from speaker.bpf.maps import (
    ENCAP4_KEY_SIZE,
    ENCAP6_KEY_SIZE,
    ENCAP_VALUE_SIZE,
    LOCATOR_KEY_SIZE,
    MAP_COUNTERS,
    MAP_ENCAP4,
    MAP_ENCAP6,
    MAP_LOCATORS,
    MAP_SIDS,
    MAP_USIDS,
    SID_KEY_SIZE,
    SID_VALUE_SIZE,
    USID_KEY_SIZE,
    USID_VALUE_SIZE,
    EncapEntry,
    LocatorEntry,
    SidEntry,
    UsidEntry,
    decode_encap,
    decode_locator,
    decode_sid,
    decode_usid,
    encode,
    sum_percpu,
)

PROG_ENCAP = "flr_encap"   # tc ingress of a pod's host veth
PROG_SID = "flr_sid"       # tc ingress of an uplink / router interface: End, decap
PROGRAMS = (PROG_ENCAP, PROG_SID)
# Index order of the counter enum in srv6.bpf.c.
COUNTERS = ("no_sid", "sl_mismatch", "too_big", "fib_fail", "encap", "decap", "end", "error",
            "usid_shift", "usid_end")
MAPS = (MAP_ENCAP4, MAP_ENCAP6, MAP_SIDS, MAP_LOCATORS, MAP_COUNTERS, MAP_USIDS)

BPFFS_MAGIC = 0xCAFE4A11

Entry = EncapEntry | SidEntry | LocatorEntry | UsidEntry

log = get_logger(component="bpf_datapath")


class _Statfs(ctypes.Structure):
    _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_byte * 120)]


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def is_bpffs(path: str) -> bool:
    """Whether path is inside a mounted bpf filesystem (statfs magic 0xcafe4a11)."""
    buf = _Statfs()
    if _libc.statfs(os.fsencode(path), ctypes.byref(buf)) != 0:
        return False
    return bool((buf.f_type & 0xFFFFFFFF) == BPFFS_MAGIC)


def ensure_bpffs(path: str) -> None:
    """mkdir -p path and mount a bpffs there unless it already is one."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise AdapterError(f"cannot create {path}: {e}") from e
    if is_bpffs(path):
        return
    res = subprocess.run(["mount", "-t", "bpf", "bpf", path], capture_output=True, text=True,
                         check=False)
    if res.returncode != 0 or not is_bpffs(path):
        raise AdapterError(f"cannot mount a bpf filesystem at {path}: "
                           f"{res.stderr.strip() or 'not a bpffs after mount'}")


class BpfDatapath:
    """The tc SRv6 programs and their maps, pinned under pin_dir, in one network namespace."""

    def __init__(self, pin_dir: str, *, netns: str | None = None,
                 obj_path: str | None = None) -> None:
        self.pin_dir = Path(pin_dir)
        self.netns = netns
        self.obj_path = obj_path
        self._maps: dict[str, int] = {}
        self._progs: dict[str, int] = {}
        self._prog_ids: dict[str, int] = {}
        self._ncpus = 0
        self._version = ""
        self._log = log.bind(pin_dir=pin_dir, netns=netns)

    # --- loading and pinning ----------------------------------------------------------------

    def _map_pin(self, name: str) -> Path:
        return self.pin_dir / "maps" / name

    def _prog_pin(self, name: str) -> Path:
        # Programs are pinned per version of the object (progs/<digest>/<name>): an upgraded
        # speaker loads its own programs beside the running ones, re-attaches (tc replaces
        # the filter in one step, no packet sees no program) and removes the old ones.
        return self.pin_dir / "progs" / self._version / name

    def _object(self) -> Path:
        if self.obj_path is not None:
            obj_path = Path(self.obj_path)
            if not obj_path.exists():
                raise AdapterError(f"BPF object {obj_path} does not exist")
            return obj_path
        from speaker.bpf import build

        return build.build()

    def _all_pinned(self) -> bool:
        return (all(self._map_pin(m).exists() for m in MAPS)
                and all(self._prog_pin(p).exists() for p in PROGRAMS))

    def load(self) -> None:
        """Reuse what is pinned in pin_dir, else load the object and pin it. Idempotent."""
        if self._maps and self._progs:
            return
        try:
            self.pin_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise AdapterError(f"cannot create the pin directory {self.pin_dir}: {e}") from e
        if not is_bpffs(str(self.pin_dir)):
            raise AdapterError(f"{self.pin_dir} is not inside a mounted bpf filesystem "
                               "(mount -t bpf bpf <dir>)")
        obj_path = self._object()
        self._version = hashlib.sha256(obj_path.read_bytes()).hexdigest()[:16]
        reused = self._all_pinned()
        if not reused:
            self._load_and_pin(obj_path)
            self._forget_other_versions()
        try:
            maps = {m: libbpf.obj_get(str(self._map_pin(m))) for m in MAPS}
            progs = {p: libbpf.obj_get(str(self._prog_pin(p))) for p in PROGRAMS}
            ids = {p: libbpf.obj_id(fd) for p, fd in progs.items()}
        except OSError as e:
            raise AdapterError(f"cannot open the pinned BPF objects in {self.pin_dir}: "
                               f"{e.strerror}") from e
        self._maps, self._progs, self._prog_ids = maps, progs, ids
        self._ncpus = libbpf.possible_cpus()
        self._log.info("bpf_datapath_loaded", reused=reused, prog_ids=ids,
                       version=self._version)

    def _forget_other_versions(self) -> None:
        """Unpin the programs of other object versions (filters still holding one keep it
        alive until `attach` replaces them; `attached` reports them as stale)."""
        progs = self.pin_dir / "progs"
        for entry in progs.iterdir():
            if entry.name == self._version:
                continue
            with contextlib.suppress(OSError):
                if entry.is_dir():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()  # the layout before versions: progs/<name>
            self._log.info("bpf_old_programs_unpinned", version=entry.name)

    def _load_and_pin(self, obj_path: Path) -> None:
        (self.pin_dir / "maps").mkdir(exist_ok=True)
        (self.pin_dir / "progs" / self._version).mkdir(parents=True, exist_ok=True)
        obj = libbpf.BpfObject(str(obj_path))
        try:
            for m in MAPS:
                # libbpf reuses a map already pinned there (a partial earlier load), else pins it
                obj.set_map_pin_path(m, str(self._map_pin(m)))
            obj.load()
            for p in PROGRAMS:
                pin = self._prog_pin(p)
                with contextlib.suppress(FileNotFoundError):
                    pin.unlink()
                obj.pin_program(p, str(pin))
        finally:
            obj.close()

    def _fd(self, name: str) -> int:
        self.load()
        return self._maps[name]

    def close(self) -> None:
        """Close our fds (pins, filters and maps stay)."""
        for fd in (*self._maps.values(), *self._progs.values()):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._maps, self._progs, self._prog_ids = {}, {}, {}

    # --- tc attach (speaker.bpf.tc) -------------------------------------------------------

    def attach(self, ifname: str, prog: str) -> bool:
        """Our filter with `prog` on ifname's ingress; True if something changed."""
        if prog not in PROGRAMS:
            raise AdapterError(f"unknown program {prog!r}: expected one of {PROGRAMS}")
        self.load()
        with tc.netlink(self.netns) as ipr:
            idx = tc.index(ipr, ifname)
            if idx is None:
                raise AdapterError(f"interface {ifname} not found in netns "
                                   f"{self.netns or '(own)'}")
            if not tc.attach(ipr, idx, self._progs[prog], f"{prog}:{self._prog_ids[prog]}"):
                return False
        self._log.info("bpf_attached", ifname=ifname, prog=prog)
        return True

    def attached(self) -> dict[str, str]:
        """ifname -> program name, for every interface of the netns carrying our filter."""
        with tc.netlink(self.netns) as ipr:
            return tc.attached(ipr, self._prog_ids)

    def detach(self, ifname: str) -> None:
        """Remove our filter; remove clsact only when no other filter remains."""
        with tc.netlink(self.netns) as ipr:
            idx = tc.index(ipr, ifname)
            if idx is None:
                return
            tc.detach(ipr, idx)
        self._log.info("bpf_detached", ifname=ifname)

    # --- maps -------------------------------------------------------------------------------

    def _dump(self, name: str, key_size: int, value_size: int) -> list[tuple[bytes, bytes]]:
        fd = self._fd(name)
        out: list[tuple[bytes, bytes]] = []
        try:
            for key in libbpf.map_keys(fd, key_size):
                value = libbpf.map_lookup(fd, key, value_size)
                if value is not None:
                    out.append((key, value))
        except OSError as e:
            raise AdapterError(f"cannot read map {name}: {e.strerror}") from e
        return out

    def list_encap(self) -> list[EncapEntry]:
        entries = [decode_encap(k, v) for k, v in
                   self._dump(MAP_ENCAP4, ENCAP4_KEY_SIZE, ENCAP_VALUE_SIZE)]
        entries += [decode_encap(k, v) for k, v in
                    self._dump(MAP_ENCAP6, ENCAP6_KEY_SIZE, ENCAP_VALUE_SIZE)]
        return sorted(entries, key=lambda e: (e.prefix.version, e.prefix))

    def list_sids(self) -> list[SidEntry]:
        return sorted((decode_sid(k, v) for k, v in
                       self._dump(MAP_SIDS, SID_KEY_SIZE, SID_VALUE_SIZE)), key=lambda e: e.sid)

    def list_usids(self) -> list[UsidEntry]:
        return sorted((decode_usid(k, v) for k, v in
                       self._dump(MAP_USIDS, USID_KEY_SIZE, USID_VALUE_SIZE)),
                      key=lambda e: e.prefix)

    def list_locators(self) -> list[LocatorEntry]:
        fd = self._fd(MAP_LOCATORS)
        try:
            keys = list(libbpf.map_keys(fd, LOCATOR_KEY_SIZE))
        except OSError as e:
            raise AdapterError(f"cannot read map {MAP_LOCATORS}: {e.strerror}") from e
        return sorted((decode_locator(k) for k in keys), key=lambda e: e.prefix)

    def apply(self, *, put: Sequence[Entry] = (),
              delete: Sequence[Entry] = ()) -> list[tuple[object, str]]:
        """Delete then put entries; returns the failures with a reason (missing deletes are
        fine)."""
        self.load()
        failures: list[tuple[object, str]] = []
        for entry in delete:
            try:
                name, key, _ = encode(entry)
                libbpf.map_delete(self._maps[name], key)
            except (ValueError, OSError) as e:
                failures.append((entry, _reason(e)))
        for entry in put:
            try:
                name, key, value = encode(entry)
                libbpf.map_update(self._maps[name], key, value)
            except (ValueError, OSError) as e:
                failures.append((entry, _reason(e)))
        if put or delete:
            self._log.info("bpf_maps_applied", put=len(put), delete=len(delete),
                           failed=len(failures))
        return failures

    def counters(self) -> dict[str, int]:
        fd = self._fd(MAP_COUNTERS)
        out: dict[str, int] = {}
        try:
            for i, name in enumerate(COUNTERS):
                value = libbpf.map_lookup(fd, i.to_bytes(4, "little"), 8 * self._ncpus)
                out[name] = sum_percpu(value, self._ncpus) if value is not None else 0
        except OSError as e:
            raise AdapterError(f"cannot read map {MAP_COUNTERS}: {e.strerror}") from e
        return out

    # --- teardown ---------------------------------------------------------------------------

    def remove(self) -> None:
        """Detach ours from every interface of the netns, unpin everything, remove pin_dir."""
        with tc.netlink(self.netns) as ipr:
            for link in ipr.get_links():
                tc.detach(ipr, link["index"])
        self.close()
        if self.pin_dir.exists():
            try:
                shutil.rmtree(self.pin_dir)
            except OSError as e:
                raise AdapterError(f"cannot remove the pins in {self.pin_dir}: {e}") from e
        self._log.info("bpf_datapath_removed")


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.errno is not None:
        if e.errno == errno.E2BIG:
            return "map is full"
        return f"{errno.errorcode.get(e.errno, str(e.errno))}: {e.strerror}"
    return str(e)
