"""A thin ctypes layer over Debian's libbpf.so.1 and the raw bpf(2) syscall.

libbpf opens, loads (verifier) and pins the object; everything after that (reading pinned objects,
map elements) goes through bpf(2) directly, so a restarted speaker needs only the pins.
Nothing here knows what the maps mean: see maps.py and datapath.py.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import platform
import sys
import threading
from collections.abc import Iterator
from typing import Any

from flatroute.errors import AdapterError

# bpf(2) commands (include/uapi/linux/bpf.h)
BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_DELETE_ELEM = 3
BPF_MAP_GET_NEXT_KEY = 4
BPF_OBJ_GET = 7
BPF_OBJ_GET_INFO_BY_FD = 15

BPF_ANY = 0

_SYS_BPF = {"x86_64": 321, "aarch64": 280, "armv7l": 386, "ppc64le": 361, "s390x": 351}

_LOG_MAX = 64 * 1024


class _MapElemAttr(ctypes.Structure):
    _fields_ = [
        ("map_fd", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
        ("key", ctypes.c_uint64),
        ("value", ctypes.c_uint64),  # also next_key
        ("flags", ctypes.c_uint64),
    ]


class _ObjAttr(ctypes.Structure):
    _fields_ = [
        ("pathname", ctypes.c_uint64),
        ("bpf_fd", ctypes.c_uint32),
        ("file_flags", ctypes.c_uint32),
        ("path_fd", ctypes.c_int32),
    ]


class _InfoAttr(ctypes.Structure):
    _fields_ = [
        ("bpf_fd", ctypes.c_uint32),
        ("info_len", ctypes.c_uint32),
        ("info", ctypes.c_uint64),
    ]


class _ProgLoadAttr(ctypes.Structure):
    _fields_ = [
        ("prog_type", ctypes.c_uint32),
        ("insn_cnt", ctypes.c_uint32),
        ("insns", ctypes.c_uint64),
        ("license", ctypes.c_uint64),
        ("log_level", ctypes.c_uint32),
        ("log_size", ctypes.c_uint32),
        ("log_buf", ctypes.c_uint64),
    ]


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _sys_bpf(cmd: int, attr: ctypes.Structure) -> int:
    nr = _SYS_BPF.get(platform.machine())
    if nr is None:
        raise AdapterError(f"bpf(2): unknown syscall number on {platform.machine()}")
    ret = int(_libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), ctypes.byref(attr),
                            ctypes.c_uint(ctypes.sizeof(attr))))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


BPF_PROG_LOAD = 5
BPF_PROG_TYPE_SCHED_CLS = 3


def prog_load(prog_type: int, insns: bytes, license: bytes = b"GPL") -> int:
    """A new fd for the program of raw instructions `insns` (BPF_PROG_LOAD, no log)."""
    ib = ctypes.create_string_buffer(insns, len(insns))
    lb = ctypes.create_string_buffer(license)
    attr = _ProgLoadAttr(prog_type=prog_type, insn_cnt=len(insns) // 8,
                         insns=ctypes.addressof(ib), license=ctypes.addressof(lb))
    return _sys_bpf(BPF_PROG_LOAD, attr)


def obj_get(path: str) -> int:
    """A new fd for the pinned map or program at path (BPF_OBJ_GET)."""
    raw = os.fsencode(path)
    buf = ctypes.create_string_buffer(raw)
    attr = _ObjAttr(pathname=ctypes.addressof(buf))
    return _sys_bpf(BPF_OBJ_GET, attr)


def obj_id(fd: int) -> int:
    """The kernel's id of the program or map behind fd (BPF_OBJ_GET_INFO_BY_FD)."""
    info = ctypes.create_string_buffer(256)  # bpf_prog_info / bpf_map_info: the id is at 4
    attr = _InfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
    _sys_bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
    return int.from_bytes(info.raw[4:8], sys.byteorder)


def map_update(fd: int, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
    kb = ctypes.create_string_buffer(key, len(key))
    vb = ctypes.create_string_buffer(value, len(value))
    attr = _MapElemAttr(map_fd=fd, key=ctypes.addressof(kb), value=ctypes.addressof(vb),
                        flags=flags)
    _sys_bpf(BPF_MAP_UPDATE_ELEM, attr)


def map_delete(fd: int, key: bytes) -> bool:
    """Delete key; False when it was not there."""
    kb = ctypes.create_string_buffer(key, len(key))
    attr = _MapElemAttr(map_fd=fd, key=ctypes.addressof(kb))
    try:
        _sys_bpf(BPF_MAP_DELETE_ELEM, attr)
    except OSError as e:
        if e.errno == errno.ENOENT:
            return False
        raise
    return True


def map_lookup(fd: int, key: bytes, value_size: int) -> bytes | None:
    kb = ctypes.create_string_buffer(key, len(key))
    vb = ctypes.create_string_buffer(value_size)
    attr = _MapElemAttr(map_fd=fd, key=ctypes.addressof(kb), value=ctypes.addressof(vb))
    try:
        _sys_bpf(BPF_MAP_LOOKUP_ELEM, attr)
    except OSError as e:
        if e.errno == errno.ENOENT:
            return None
        raise
    return vb.raw


def map_keys(fd: int, key_size: int) -> Iterator[bytes]:
    """Every key of the map (BPF_MAP_GET_NEXT_KEY from no key)."""
    nxt = ctypes.create_string_buffer(key_size)
    cur: Any = None
    while True:
        attr = _MapElemAttr(map_fd=fd, key=ctypes.addressof(cur) if cur is not None else 0,
                            value=ctypes.addressof(nxt))
        try:
            _sys_bpf(BPF_MAP_GET_NEXT_KEY, attr)
        except OSError as e:
            if e.errno == errno.ENOENT:
                return
            raise
        key = nxt.raw
        yield key
        cur = ctypes.create_string_buffer(key, key_size)


def possible_cpus() -> int:
    """Number of possible CPUs: the stride of per-CPU map values."""
    try:
        with open("/sys/devices/system/cpu/possible") as f:
            text = f.read().strip()
    except OSError as e:
        raise AdapterError(f"cannot read the possible CPUs: {e}") from e
    total = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        total += (int(hi) if hi else int(lo)) - int(lo) + 1
    return total


# --- libbpf: open, load with the verifier's log, pin -------------------------------------------

_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
_lib_lock = threading.Lock()


class _State:
    """libbpf's handle and the log lines libbpf printed during the current open/load."""

    lib: Any = None
    lines: list[str] = []
    size = 0

    @classmethod
    def reset(cls) -> None:
        cls.lines = []
        cls.size = 0


def _on_print(_level: int, fmt: bytes | None, args: int | None) -> int:
    if fmt is None or _State.size > _LOG_MAX:
        return 0
    buf = ctypes.create_string_buffer(4096)
    # va_list is passed as a pointer on the ABIs we run on (x86-64, aarch64 Linux)
    n = _libc.vsnprintf(buf, ctypes.c_size_t(len(buf)), fmt, ctypes.c_void_p(args))
    if n > 0:
        line = buf.value.decode(errors="replace")
        _State.lines.append(line)
        _State.size += len(line)
    return 0


_print_cb = _PRINT_FN(_on_print)  # kept alive for as long as libbpf may call it


def _libbpf() -> Any:
    with _lib_lock:
        if _State.lib is not None:
            return _State.lib
        name = ctypes.util.find_library("bpf") or "libbpf.so.1"
        try:
            lib = ctypes.CDLL(name, use_errno=True)
        except OSError as e:
            raise AdapterError(f"cannot load libbpf ({e}): install libbpf1 / libbpf-dev") from e
        vp, cp, ci = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
        sigs: dict[str, tuple[Any, list[Any]]] = {
            "bpf_object__open_file": (vp, [cp, vp]),
            "bpf_object__load": (ci, [vp]),
            "bpf_object__close": (None, [vp]),
            "bpf_object__find_program_by_name": (vp, [vp, cp]),
            "bpf_object__find_map_by_name": (vp, [vp, cp]),
            "bpf_program__fd": (ci, [vp]),
            "bpf_program__pin": (ci, [vp, cp]),
            "bpf_map__fd": (ci, [vp]),
            "bpf_map__set_pin_path": (ci, [vp, cp]),
            "bpf_map__pin": (ci, [vp, cp]),
            "libbpf_set_print": (vp, [_PRINT_FN]),
        }
        for fn, (res, args) in sigs.items():
            f = getattr(lib, fn)
            f.restype = res
            f.argtypes = args
        _libc.vsnprintf.restype = ctypes.c_int
        _libc.vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
                                    ctypes.c_void_p]
        lib.libbpf_set_print(_print_cb)
        _State.lib = lib
        return lib


def _err(ret: int) -> str:
    code = -ret if ret < 0 else ctypes.get_errno()
    return f"{errno.errorcode.get(code, str(code))}: {os.strerror(code)}"


def _tail(limit: int = 6000) -> str:
    text = "".join(_State.lines).strip()
    return text[-limit:] if len(text) > limit else text


class BpfObject:
    """An opened (then loaded) BPF object file; close() releases libbpf's copy of the fds."""

    def __init__(self, path: str) -> None:
        self._lib = _libbpf()
        with _lib_lock:
            _State.reset()
            ctypes.set_errno(0)
            obj = self._lib.bpf_object__open_file(os.fsencode(path), None)
            if not obj:
                raise AdapterError(f"libbpf cannot open {path} ({_err(0)}): {_tail()}")
        self._obj: int | None = obj

    def _handle(self) -> int:
        if self._obj is None:
            raise AdapterError("BPF object already closed")
        return self._obj

    def set_map_pin_path(self, name: str, path: str) -> None:
        """Pin the map there on load, or reuse the map already pinned there."""
        m = self._map(name)
        ret = self._lib.bpf_map__set_pin_path(m, os.fsencode(path))
        if ret:
            raise AdapterError(f"libbpf: cannot set the pin path of map {name} ({_err(ret)})")

    def load(self) -> None:
        """Load every program through the verifier; the error carries libbpf's log."""
        with _lib_lock:
            _State.reset()
            ret = self._lib.bpf_object__load(self._handle())
            if ret:
                raise AdapterError(f"loading the BPF object failed ({_err(ret)}); "
                                   f"verifier/libbpf log:\n{_tail()}")

    def _map(self, name: str) -> int:
        m = self._lib.bpf_object__find_map_by_name(self._handle(), name.encode())
        if not m:
            raise AdapterError(f"BPF object has no map named {name}")
        return int(m)

    def _prog(self, name: str) -> int:
        p = self._lib.bpf_object__find_program_by_name(self._handle(), name.encode())
        if not p:
            raise AdapterError(f"BPF object has no program named {name}")
        return int(p)

    def map_fd(self, name: str) -> int:
        fd = int(self._lib.bpf_map__fd(self._map(name)))
        if fd < 0:
            raise AdapterError(f"map {name} has no fd ({_err(fd)})")
        return fd

    def prog_fd(self, name: str) -> int:
        fd = int(self._lib.bpf_program__fd(self._prog(name)))
        if fd < 0:
            raise AdapterError(f"program {name} has no fd ({_err(fd)})")
        return fd

    def pin_program(self, name: str, path: str) -> None:
        ret = self._lib.bpf_program__pin(self._prog(name), os.fsencode(path))
        if ret:
            raise AdapterError(f"cannot pin program {name} at {path} ({_err(ret)}): {_tail()}")

    def close(self) -> None:
        if self._obj is not None:
            self._lib.bpf_object__close(self._obj)
            self._obj = None
