"""CNI errors: the spec's codes plus ours (100+). Mapped to JSON once, in cni.main.

The table of every code, and when each is returned, is in docs/cni.md.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: `import typing` costs ~20 ms of start-up
if TYPE_CHECKING:
    from typing import Any


INCOMPATIBLE_VERSION = 1  # cniVersion not supported
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3  # CHECK: no attachment recorded for container id + ifname
INVALID_ENV = 4  # a CNI_* variable missing or malformed; CNI_NETNS not a netns
IO_ERROR = 5  # the data directory cannot be read or written
DECODE = 6  # stdin is not a JSON object
INVALID_CONFIG = 7  # a config field is missing or wrong (bad ranges...)
TRY_AGAIN = 11  # the IPAM lock was not taken within ipam.lockTimeout
NOT_AVAILABLE = 50  # no node file, no pod block, data dir unusable, IPAM plugin missing
DEGRADED = 51  # reservations outside the node's current pod blocks
NETLINK = 100  # the kernel refused a netlink request (or a sysctl write)
EXHAUSTED = 102  # every address of a range set is reserved
DUPLICATE = 103  # ADD for a container id + ifname that already has an attachment
IF_EXISTS = 104  # CNI_IFNAME exists in the pod netns, or the host veth name is taken
DELEGATE_RESULT = 105  # the delegated IPAM plugin returned no usable address
PLUGIN_NOT_FOUND = 106  # ipam.type is not an executable in CNI_PATH
CHECK_FAILED = 110  # CHECK: details list every missing or different item
INTERNAL = 199  # a bug: an unexpected exception, reported instead of a traceback


class CniError(Exception):
    """An error the plugin reports to the runtime as the spec's error object."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_dict(self, cni_version: str) -> dict[str, Any]:
        doc: dict[str, Any] = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            doc["details"] = self.details
        return doc


class DelegateError(CniError):
    """An error object returned by a delegated plugin, passed on unchanged."""
