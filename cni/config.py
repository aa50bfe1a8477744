"""Parse the CNI environment and network configuration into typed values, once, at the edge.

Everything past this module sees `Env` and `NetConf`, never a raw dict or os.environ.
"""

from __future__ import annotations

import os

from cni import addr
from cni.errors import INCOMPATIBLE_VERSION, INVALID_CONFIG, INVALID_ENV, NOT_AVAILABLE, CniError
from flatroute import CNI_ROUTE_PROTOCOL, ROUTE_PROTOCOL

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: `import typing` costs ~20 ms of start-up
if TYPE_CHECKING:
    from typing import Any

SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST = "1.1.0"
COMMANDS = ("ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION")
DEFAULT_DATA_DIR = "/var/lib/cni/flatroute"
# Same as flatroute.nodefile.DEFAULT_PATH (a unit test keeps them equal): importing that module
# costs ~50 ms of start-up (dataclasses, tempfile, json), so the plugin reads the file itself.
DEFAULT_NODE_FILE = "/run/flatroute/node.json"
BUILTIN_IPAM = ("", "flatroute")
GATEWAY_V4 = "169.254.1.1"
GATEWAY_V6 = "fe80::1"
MAX_IFNAME = 15
#: what plugins before CNI_ROUTE_PROTOCOL gave the pods' host routes (the speaker's protocol):
#: CHECK and GC still recognise it on a pod's own veth, so pods made before an upgrade keep
#: working (docs/cni.md, "Route ownership and upgrades")
LEGACY_POD_ROUTE_PROTOCOL = ROUTE_PROTOCOL


class Env:
    __slots__ = ("args", "command", "container_id", "ifname", "netns", "path")

    def __init__(self, command: str, container_id: str, ifname: str, netns: str,
                 path: tuple[str, ...], args: str) -> None:
        self.command = command
        self.container_id = container_id
        self.ifname = ifname
        self.netns = netns
        self.path = path
        self.args = args


def _valid_container_id(cid: str) -> bool:
    # The same rule as libcni: [a-zA-Z0-9][a-zA-Z0-9_.-]*
    if not cid or not cid[0].isascii() or not cid[0].isalnum():
        return False
    return all(c.isascii() and (c.isalnum() or c in "_.-") for c in cid)


def ifname_problem(name: str) -> str:
    if not name:
        return "is empty"
    if len(name) > MAX_IFNAME:
        return f"is longer than {MAX_IFNAME} characters"
    if name in (".", "..") or any(c in "/:" or c.isspace() for c in name):
        return "contains '/', ':', whitespace or is '.' or '..'"
    return ""


def parse_env(environ: dict[str, str] | os._Environ[str]) -> Env:
    command = environ.get("CNI_COMMAND", "")
    if not command:
        raise CniError(INVALID_ENV, "CNI_COMMAND is not set")
    if command not in COMMANDS:
        raise CniError(INVALID_ENV, f"unknown CNI_COMMAND {command!r}")
    cid = environ.get("CNI_CONTAINERID", "")
    ifname = environ.get("CNI_IFNAME", "")
    netns = environ.get("CNI_NETNS", "")
    path = environ.get("CNI_PATH", "")
    if command in ("ADD", "DEL", "CHECK"):
        if not cid:
            raise CniError(INVALID_ENV, "CNI_CONTAINERID is not set")
        if not _valid_container_id(cid):
            raise CniError(INVALID_ENV, "CNI_CONTAINERID has invalid characters",
                           "it must match [a-zA-Z0-9][a-zA-Z0-9_.-]*")
        if not ifname:
            raise CniError(INVALID_ENV, "CNI_IFNAME is not set")
        problem = ifname_problem(ifname)
        if problem:
            raise CniError(INVALID_ENV, f"CNI_IFNAME {ifname!r} {problem}")
    if command in ("ADD", "CHECK") and not netns:
        raise CniError(INVALID_ENV, "CNI_NETNS is not set")
    if command != "VERSION" and not path:
        raise CniError(INVALID_ENV, "CNI_PATH is not set")
    return Env(command, cid, ifname, netns, tuple(p for p in path.split(":") if p),
               environ.get("CNI_ARGS", ""))


class Range:
    """A contiguous pool of addresses of one family, both ends included."""

    __slots__ = ("end", "start", "subnet", "version")

    def __init__(self, version: int, start: int, end: int, subnet: str) -> None:
        self.version = version
        self.start = start
        self.end = end
        self.subnet = subnet

    def __contains__(self, value: int) -> bool:
        return self.start <= value <= self.end

    def __repr__(self) -> str:
        return f"Range({addr.fmt(self.version, self.start)}-{addr.fmt(self.version, self.end)})"


def make_range(subnet: str, start: str | None = None, end: str | None = None,
               where: str = "subnet") -> Range:
    """host-local semantics: skip the network address (and the IPv4 broadcast) by default."""
    try:
        version, net, plen = addr.parse_cidr(subnet, strict=False)
    except ValueError as exc:
        raise CniError(INVALID_CONFIG, f"{where}: {exc}") from None
    bits = addr.BITS[version]
    last = net | ((1 << (bits - plen)) - 1)
    lo, hi = net + 1, (last - 1 if version == addr.V4 else last)
    if plen == bits:  # a single address
        lo = hi = net
    for label, text in (("rangeStart", start), ("rangeEnd", end)):
        if text is None:
            continue
        try:
            v, value = addr.parse_ip(text)
        except ValueError as exc:
            raise CniError(INVALID_CONFIG, f"{where}.{label}: {exc}") from None
        if v != version or not net <= value <= last:
            raise CniError(INVALID_CONFIG, f"{where}.{label}: {text} is not in {subnet}")
        if label == "rangeStart":
            lo = value
        else:
            hi = value
    if lo > hi:
        raise CniError(INVALID_CONFIG, f"{where}: {subnet} has no usable address")
    return Range(version, lo, hi, f"{addr.fmt(version, net)}/{plen}")


def parse_ranges(doc: Any, where: str = "ipam.ranges") -> list[list[Range]]:
    if not isinstance(doc, list) or not doc:
        raise CniError(INVALID_CONFIG, f"{where} must be a non-empty list of range sets")
    sets: list[list[Range]] = []
    versions: set[int] = set()
    for i, rset in enumerate(doc):
        if not isinstance(rset, list) or not rset:
            raise CniError(INVALID_CONFIG, f"{where}[{i}] must be a non-empty list of ranges")
        out: list[Range] = []
        for j, item in enumerate(rset):
            at = f"{where}[{i}][{j}]"
            if not isinstance(item, dict) or not isinstance(item.get("subnet"), str):
                raise CniError(INVALID_CONFIG, f"{at}.subnet must be a CIDR string")
            start, end = item.get("rangeStart"), item.get("rangeEnd")
            if (start is not None and not isinstance(start, str)) or (
                    end is not None and not isinstance(end, str)):
                raise CniError(INVALID_CONFIG, f"{at}: rangeStart and rangeEnd must be strings")
            r = make_range(item["subnet"], start, end, at)
            if out and r.version != out[0].version:
                raise CniError(INVALID_CONFIG, f"{at}: a range set mixes IPv4 and IPv6")
            for other in out:
                if r.start <= other.end and other.start <= r.end:
                    raise CniError(INVALID_CONFIG, f"{at}: overlaps another range of the set")
            out.append(r)
        if out[0].version in versions:
            raise CniError(INVALID_CONFIG, f"{where}[{i}]: only one IPv4 and one IPv6 range set")
        versions.add(out[0].version)
        sets.append(out)
    return sets


class NodeInfo:
    __slots__ = ("blocks", "gateway_v4", "gateway_v6", "mtu", "node", "pod_route_protocol",
                 "route_protocol")

    def __init__(self, node: str, blocks: tuple[tuple[str, ...], tuple[str, ...]], mtu: int,
                 gateway_v4: str, gateway_v6: str, route_protocol: int,
                 pod_route_protocol: int = CNI_ROUTE_PROTOCOL) -> None:
        self.node = node
        self.blocks = blocks
        self.mtu = mtu
        self.gateway_v4 = gateway_v4
        self.gateway_v6 = gateway_v6
        self.route_protocol = route_protocol  # the speaker's
        self.pod_route_protocol = pod_route_protocol  # ours: what the pods' host routes carry


def read_node_file(path: str) -> NodeInfo:
    """Read the speaker's node file (format: flatroute/nodefile.py); errors are code 50."""
    from cni import jsonlite

    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise CniError(NOT_AVAILABLE, f"{path}: no node file (is the speaker running?)") from None
    except OSError as exc:
        raise CniError(NOT_AVAILABLE, f"{path}: cannot read node file: {exc.strerror}") from None
    try:
        doc = jsonlite.loads(text)
        if doc.get("version") != 1:
            raise ValueError(f"unsupported version {doc.get('version')!r}")
        blocks = doc.get("podBlocks") or {}
        gw = doc.get("gateway") or {}
        return NodeInfo(
            node=str(doc["node"]),
            blocks=(tuple(str(b) for b in blocks.get("ipv4") or ()),
                    tuple(str(b) for b in blocks.get("ipv6") or ())),
            mtu=int(doc.get("mtu", 1500)),
            gateway_v4=str(gw.get("ipv4", GATEWAY_V4)),
            gateway_v6=str(gw.get("ipv6", GATEWAY_V6)),
            route_protocol=int(doc.get("routeProtocol", ROUTE_PROTOCOL)),
            pod_route_protocol=int(doc.get("podRouteProtocol", CNI_ROUTE_PROTOCOL)),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CniError(NOT_AVAILABLE, f"{path}: malformed node file: {exc}") from None


class NetConf:
    __slots__ = ("cni_version", "data_dir", "dns", "ipam_raw", "ipam_type", "lock_timeout", "mtu",
                 "name", "node_file", "prev_result", "ranges", "raw", "route_protocol",
                 "valid_attachments")

    def __init__(self) -> None:
        self.cni_version = LATEST
        self.name = ""
        self.raw: bytes = b""
        self.prev_result: dict[str, Any] | None = None
        self.mtu: int | None = None
        self.node_file = DEFAULT_NODE_FILE
        self.data_dir = DEFAULT_DATA_DIR
        self.ipam_type = ""
        self.ipam_raw: dict[str, Any] = {}
        self.ranges: list[list[Range]] | None = None
        self.lock_timeout = 10.0
        #: the config's `routeProtocol` for the pods' host routes; None: the node file's
        #: podRouteProtocol, else CNI_ROUTE_PROTOCOL
        self.route_protocol: int | None = None
        self.dns: dict[str, Any] = {}
        self.valid_attachments: list[tuple[str, str]] | None = None

    @property
    def delegated(self) -> bool:
        return self.ipam_type not in BUILTIN_IPAM


def version_of(doc: Any) -> str:
    v = doc.get("cniVersion") if isinstance(doc, dict) else None
    return v if isinstance(v, str) and v else LATEST


def check_version(version: Any) -> str:
    if not isinstance(version, str) or not version:
        raise CniError(INVALID_CONFIG, "cniVersion must be a non-empty string")
    if version not in SUPPORTED_VERSIONS:
        raise CniError(INCOMPATIBLE_VERSION, f"incompatible CNI version {version}",
                       f"this plugin supports {', '.join(SUPPORTED_VERSIONS)}")
    return version


def _num(doc: dict[str, Any], key: str, where: str, lo: float, hi: float) -> float | None:
    value = doc.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise CniError(INVALID_CONFIG, f"{where}{key} must be a number in [{lo}, {hi}]")
    return value


def parse_conf(doc: Any, raw: bytes) -> NetConf:
    """Validate the network configuration (doc is already decoded JSON)."""
    conf = NetConf()
    conf.raw = raw
    conf.cni_version = check_version(doc.get("cniVersion"))
    name = doc.get("name")
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        raise CniError(INVALID_CONFIG, "name must be a non-empty string without '/'")
    conf.name = name
    prev = doc.get("prevResult")
    if prev is not None:
        if not isinstance(prev, dict):
            raise CniError(INVALID_CONFIG, "prevResult must be an object")
        conf.prev_result = prev
    mtu = _num(doc, "mtu", "", 68, 65535)
    conf.mtu = int(mtu) if mtu is not None else None
    for key, attr_name in (("nodeFile", "node_file"), ("dataDir", "data_dir")):
        value = doc.get(key)
        if value is not None:
            if not isinstance(value, str) or not value.startswith("/"):
                raise CniError(INVALID_CONFIG, f"{key} must be an absolute path")
            setattr(conf, attr_name, value)
    dns = doc.get("dns")
    if isinstance(dns, dict):
        conf.dns = dns
    _parse_ipam(conf, doc.get("ipam", {}))
    proto = _num(doc, "routeProtocol", "", 1, 255)
    if proto is not None:
        conf.route_protocol = int(proto)
    conf.valid_attachments = _valid_attachments(doc)
    return conf


def _parse_ipam(conf: NetConf, ipam: Any) -> None:
    """`ipam`: the delegate's type, or the built-in IPAM's ranges, dataDir and lockTimeout."""
    if not isinstance(ipam, dict):
        raise CniError(INVALID_CONFIG, "ipam must be an object")
    conf.ipam_raw = ipam
    itype = ipam.get("type", "")
    if not isinstance(itype, str) or "/" in itype:
        raise CniError(INVALID_CONFIG, "ipam.type must be a plugin name")
    conf.ipam_type = itype
    if not conf.delegated:
        if "ranges" in ipam:
            conf.ranges = parse_ranges(ipam["ranges"])
        data_dir = ipam.get("dataDir")
        if data_dir is not None:
            if not isinstance(data_dir, str) or not data_dir.startswith("/"):
                raise CniError(INVALID_CONFIG, "ipam.dataDir must be an absolute path")
            conf.data_dir = data_dir
        timeout = _num(ipam, "lockTimeout", "ipam.", 0, 600)
        if timeout is not None:
            conf.lock_timeout = float(timeout)


def _valid_attachments(doc: dict[str, Any]) -> list[tuple[str, str]] | None:
    """GC's `cni.dev/valid-attachments`, top level or under runtimeConfig."""
    rc = doc.get("runtimeConfig")
    valid = doc.get("cni.dev/valid-attachments")
    if valid is None and isinstance(rc, dict):
        valid = rc.get("cni.dev/valid-attachments")
    if valid is None:
        return None
    if not isinstance(valid, list) or not all(
            isinstance(v, dict) and isinstance(v.get("containerID"), str)
            and isinstance(v.get("ifname"), str) for v in valid):
        raise CniError(INVALID_CONFIG,
                       "cni.dev/valid-attachments must be a list of {containerID, ifname}")
    return [(v["containerID"], v["ifname"]) for v in valid]
