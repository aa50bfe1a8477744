"""CNI errors: the spec's codes plus ours (100+). Mapped to JSON once, in cni.main.

| code | meaning | when |
|---|---|---|
| 1 | incompatible CNI version | cniVersion not one of SUPPORTED_VERSIONS |
| 3 | unknown container | CHECK for an attachment we have no record of |
| 4 | invalid environment | a required CNI_* variable missing or malformed (CNI_IFNAME > 15 chars, CNI_NETNS not a netns) |
| 5 | I/O error | the data directory cannot be read or written |
| 6 | decoding failure | stdin is not a JSON object |
| 7 | invalid network config | a field of the config is missing or wrong (bad ranges...) |
| 11 | try again later | the IPAM lock could not be taken within ipam.lockTimeout |
| 50 | plugin not available | STATUS/ADD: no node file, no pod block yet, data dir unusable, IPAM plugin missing |
| 51 | not available, existing pods may be degraded | STATUS: reservations outside the node's current pod blocks |
| 100 | kernel refused a netlink request | ADD/DEL/GC; details carry errno and the extended ack |
| 102 | address range exhausted | ADD: every address of a range set is reserved |
| 103 | duplicate attachment | ADD for a container id + ifname that already has one |
| 104 | interface exists | ADD: CNI_IFNAME already exists in the pod netns, or the host veth name is taken |
| 105 | delegated IPAM returned no usable address | ADD with ipam.type set to another plugin |
| 106 | IPAM plugin not found | ipam.type is not an executable in CNI_PATH |
| 110 | CHECK found a difference | CHECK; details list each missing or different item |
"""

from __future__ import annotations

from typing import Any

INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENV = 4
IO_ERROR = 5
DECODE = 6
INVALID_CONFIG = 7
TRY_AGAIN = 11
NOT_AVAILABLE = 50
DEGRADED = 51
NETLINK = 100
EXHAUSTED = 102
DUPLICATE = 103
IF_EXISTS = 104
DELEGATE_RESULT = 105
PLUGIN_NOT_FOUND = 106
CHECK_FAILED = 110


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
