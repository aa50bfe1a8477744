"""One function per CNI verb. Each takes the parsed Env and NetConf and returns the result
object (or None), or raises CniError. The JSON edge lives in cni.main."""

from __future__ import annotations

import errno
import os

from cni import addr, alloc, ipam
from cni import netlink as nl
from cni.config import (
    GATEWAY_V4,
    GATEWAY_V6,
    LEGACY_POD_ROUTE_PROTOCOL,
    Env,
    NetConf,
    Range,
    make_range,
    read_node_file,
)
from cni.errors import (
    CHECK_FAILED,
    DEGRADED,
    DELEGATE_RESULT,
    IF_EXISTS,
    INVALID_CONFIG,
    INVALID_ENV,
    NETLINK,
    NOT_AVAILABLE,
    UNKNOWN_CONTAINER,
    CniError,
    DelegateError,
)
from flatroute import CNI_ROUTE_PROTOCOL

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: `import typing` costs ~20 ms of start-up
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from cni.store import Store

VETH_PREFIX = "flr"
_HEX = frozenset("0123456789abcdef")


def veth_name(container_id: str, ifname: str) -> str:
    """Deterministic host-side name: 'flr' + 12 hex digits of FNV-1a 64 (15 characters)."""
    h = 0xCBF29CE484222325
    for b in f"{container_id}\0{ifname}".encode():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{VETH_PREFIX}{h:016x}"[:15]


def is_our_veth(name: str) -> bool:
    return len(name) == 15 and name.startswith(VETH_PREFIX) and set(name[3:]) <= _HEX


class Pools:
    """Where addresses come from and what the datapath looks like, for this ADD."""

    __slots__ = ("gw4", "gw6", "mtu", "protocol", "rangesets")

    def __init__(self, rangesets: list[list[Range]], mtu: int, gw4: str, gw6: str,
                 protocol: int) -> None:
        self.rangesets = rangesets
        self.mtu = mtu
        self.gw4 = gw4
        self.gw6 = gw6
        self.protocol = protocol


def pools(conf: NetConf) -> Pools:
    if conf.ranges is not None or conf.delegated:
        return Pools(conf.ranges or [], conf.mtu or 1500, GATEWAY_V4, GATEWAY_V6,
                     conf.route_protocol or CNI_ROUTE_PROTOCOL)
    node = read_node_file(conf.node_file)
    sets: list[list[Range]] = []
    for version, blocks in ((4, node.blocks[0]), (6, node.blocks[1])):
        rset: list[Range] = []
        for i, block in enumerate(blocks):
            where = f"{conf.node_file}: podBlocks.ipv{version}[{i}]"
            try:
                r = make_range(block, where=where)
            except CniError as exc:
                raise CniError(NOT_AVAILABLE, exc.msg) from None
            if r.version != version:
                raise CniError(NOT_AVAILABLE, f"{where}: {block} is not IPv{version}")
            rset.append(r)
        if rset:
            sets.append(rset)
    if not sets:
        raise CniError(NOT_AVAILABLE, f"{conf.node_file}: no pod block assigned to this node yet")
    return Pools(sets, conf.mtu or node.mtu, node.gateway_v4, node.gateway_v6,
                 conf.route_protocol or node.pod_route_protocol)


def pod_route_protocols(conf: NetConf) -> frozenset[int]:
    """Every protocol a pod's host route of ours may carry: the one ADD writes now, and the
    speaker's, which plugins before CNI_ROUTE_PROTOCOL wrote (pods made before an upgrade).
    Only ever matched on a pod's own veth."""
    protos = {LEGACY_POD_ROUTE_PROTOCOL, conf.route_protocol or CNI_ROUTE_PROTOCOL}
    if conf.route_protocol is None and conf.ranges is None and not conf.delegated:
        try:  # noqa: SIM105 - contextlib costs start-up time
            protos.add(read_node_file(conf.node_file).pod_route_protocol)
        except CniError:
            pass  # GC needs no node file
    return frozenset(protos)


def _store(conf: NetConf) -> Store:
    return ipam.FileStore(conf.data_dir, conf.name, conf.lock_timeout)


def _open_netns(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise CniError(INVALID_ENV, f"CNI_NETNS {path} cannot be opened",
                       exc.strerror or "") from None


def _netns_socket(pod_fd: int, netns: str) -> nl.Netlink:
    """A netlink socket bound to the pod netns; this process returns to its own netns."""
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            nl.setns(pod_fd)
        except OSError as exc:
            raise CniError(INVALID_ENV, f"CNI_NETNS {netns} is not a network namespace",
                           exc.strerror or "") from None
        try:
            return nl.Netlink()
        finally:
            nl.setns(here)
    finally:
        os.close(here)


def _sysctl(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _host_sysctls(name: str, v6: bool) -> None:
    # Per interface only: answer ARP for the gateway, forward what the pod sends.
    _sysctl(f"/proc/sys/net/ipv4/conf/{name}/proxy_arp", "1")
    _sysctl(f"/proc/sys/net/ipv4/neigh/{name}/proxy_delay", "0")
    _sysctl(f"/proc/sys/net/ipv4/conf/{name}/forwarding", "1")
    if v6:
        # Linux >= 6.17; older nodes need net.ipv6.conf.all.forwarding=1 (the speaker's job).
        try:  # noqa: SIM105 - contextlib costs start-up time
            _sysctl(f"/proc/sys/net/ipv6/conf/{name}/force_forwarding", "1")
        except FileNotFoundError:
            pass


def _netlink_error(exc: nl.NetlinkError) -> CniError:
    return CniError(NETLINK, f"kernel refused to {exc.what}", exc.strerror or "")


# --- results -------------------------------------------------------------------------------

def _ip_entry(version: str, address: str, gateway: str, iface: int, cni_version: str,
              ) -> dict[str, Any]:
    entry: dict[str, Any] = {"address": address, "gateway": gateway, "interface": iface}
    if cni_version < "1.0.0":
        entry = {"version": version, **entry}
    return entry


def _convert_prev(prev: dict[str, Any] | None, cni_version: str) -> dict[str, Any]:
    out: dict[str, Any] = {"interfaces": [], "ips": [], "routes": [], "dns": {}}
    if not prev:
        return out
    for key in ("interfaces", "ips", "routes"):
        value = prev.get(key)
        if isinstance(value, list):
            out[key] = [dict(v) for v in value if isinstance(v, dict)]
    if isinstance(prev.get("dns"), dict):
        out["dns"] = prev["dns"]
    for ip in out["ips"]:
        if cni_version >= "1.0.0":
            ip.pop("version", None)
        elif "version" not in ip and isinstance(ip.get("address"), str):
            ip["version"] = "6" if ":" in ip["address"] else "4"
    return out


# --- ADD ---------------------------------------------------------------------------------

def cmd_add(env: Env, conf: NetConf, store: Store | None = None) -> dict[str, Any]:
    host = veth_name(env.container_id, env.ifname)
    undo: list[Callable[[], object]] = []
    try:
        return _add(env, conf, host, undo, store or _store(conf))
    except BaseException:
        for step in reversed(undo):
            try:
                step()
            except Exception:  # best effort; the original error is what matters
                continue
        raise


def _add(env: Env, conf: NetConf, host: str, undo: list[Callable[[], object]],
         store: Store) -> dict[str, Any]:
    cid, ifname = env.container_id, env.ifname
    pod_fd = _open_netns(env.netns)
    undo.append(lambda: os.close(pod_fd))
    pl = pools(conf)
    gw = {addr.V4: addr.parse_ip(pl.gw4), addr.V6: addr.parse_ip(pl.gw6)}
    reserved: list[str] = []
    with store:
        store.create_attachment(host, cid, ifname)
        # Runs after the `with` let go of the lock: it takes it again.
        undo.append(lambda: _forget(store, host, cid, ifname, reserved))
        if conf.delegated:
            result = _delegate_add(env, conf, undo)
            addresses = _delegated_addresses(result, conf.ipam_type)
        else:
            for rset in pl.rangesets:
                gateway = frozenset({gw[rset[0].version][1]})
                reserved.append(alloc.allocate(store, rset, cid, ifname, skip=gateway))
            addresses = [addr.parse_ip(a) for a in reserved]
        store.add_addresses(host, [addr.fmt(*a) for a in addresses])
    v6 = any(v == addr.V6 for v, _ in addresses)

    hnl = nl.Netlink()
    undo.append(hnl.close)
    pnl = _netns_socket(pod_fd, env.netns)
    undo.append(pnl.close)
    try:
        created = hnl.batch([nl.req_veth(host, ifname, pod_fd, pl.mtu), nl.req_getlink(host)])
    except nl.NetlinkError as exc:
        if exc.errno == errno.EEXIST:
            if nl.get_link(hnl, host) is not None:
                raise CniError(IF_EXISTS, f"host interface {host} already exists",
                               "a previous ADD of this container and ifname was not deleted"
                               ) from None
            raise CniError(IF_EXISTS, f"interface {ifname} already exists in {env.netns}"
                           ) from None
        raise _netlink_error(exc) from None
    undo.append(lambda: hnl.batch([nl.req_dellink(host)], tolerate=(errno.ENODEV,)))
    hlink = nl.Link(created[1][0][1])
    pidx = hlink.link

    try:
        reqs = [nl.req_linkup(pidx)]
        for version, value in addresses:
            reqs.append(nl.req_addr(addr.family(version), addr.packed(version, value),
                                    addr.BITS[version], pidx))
        if any(v == addr.V4 for v, _ in addresses):
            # The IPv4 gateway is answered in the pod itself: a permanent entry for the host
            # end's MAC. Proxy ARP on the host end (kept, for pods that flush their table)
            # answers only while the node has a route toward the gateway address, i.e. not
            # before its default route is learned over BGP: pods on one node could not even
            # reach each other until then.
            reqs.append(nl.req_neigh(addr.family(addr.V4), addr.packed(*gw[addr.V4]),
                                     bytes.fromhex(hlink.mac.replace(":", "")), pidx))
        for version, _value in addresses:
            reqs.append(nl.req_route(addr.family(version), b"", 0, pidx, pl.protocol,
                                     gateway=addr.packed(*gw[version]),
                                     onlink=version == addr.V4))
        reqs.append(nl.req_getlink(index=pidx))
        pod_answers = pnl.batch(reqs)
        plink = nl.Link(pod_answers[-1][0][1])

        _host_sysctls(host, v6)
        reqs = [nl.req_linkup(hlink.index)]
        if v6:
            reqs.append(nl.req_addr(nl.AF_INET6,
                                    addr.packed(*gw[addr.V6]), 64, hlink.index))
        for version, value in addresses:
            reqs.append(nl.req_route(addr.family(version), addr.packed(version, value),
                                     addr.BITS[version], hlink.index, pl.protocol))
        hnl.batch(reqs)
    except nl.NetlinkError as exc:
        raise _netlink_error(exc) from None
    except OSError as exc:
        raise CniError(NETLINK, "cannot set the host interface's sysctls",
                       f"{exc.filename}: {exc.strerror}") from None

    # Success: nothing to undo but closing what we opened.
    undo.clear()
    hnl.close()
    pnl.close()
    os.close(pod_fd)

    out = _convert_prev(conf.prev_result, conf.cni_version)
    base = len(out["interfaces"])
    host_if: dict[str, Any] = {"name": host, "mac": hlink.mac}
    pod_if: dict[str, Any] = {"name": ifname, "mac": plink.mac, "sandbox": env.netns}
    if conf.cni_version >= "1.1.0":
        host_if["mtu"] = pod_if["mtu"] = pl.mtu
    out["interfaces"] += [host_if, pod_if]
    for version, value in addresses:
        cidr = f"{addr.fmt(version, value)}/{addr.BITS[version]}"
        out["ips"].append(_ip_entry(str(version), cidr, addr.fmt(*gw[version]), base + 1,
                                    conf.cni_version))
        out["routes"].append({"dst": "0.0.0.0/0" if version == addr.V4 else "::/0",
                              "gw": addr.fmt(*gw[version])})
    if conf.dns and not out["dns"]:
        out["dns"] = conf.dns
    return {"cniVersion": conf.cni_version, **out}


def _forget(store: Store, key: str, cid: str, ifname: str, reserved: list[str]) -> None:
    """Undo ADD's IPAM step: its reservations and its attachment record, under the lock."""
    with store:
        for text in reserved:
            alloc.release(store, text, cid, ifname)
        store.remove_attachment(key)


def _delegate_add(env: Env, conf: NetConf, undo: list[Callable[[], object]]) -> dict[str, Any]:
    from cni import delegate

    result = delegate.run(conf.ipam_type, env.path, "ADD", conf.raw)
    undo.append(lambda: delegate.run(conf.ipam_type, env.path, "DEL", conf.raw))
    if result is None:
        raise CniError(DELEGATE_RESULT, f"IPAM plugin {conf.ipam_type} returned no result")
    return result


def _delegated_addresses(result: dict[str, Any], plugin: str) -> list[tuple[int, int]]:
    out: dict[int, tuple[int, int]] = {}
    for ip in result.get("ips") or ():
        try:
            version, value = addr.parse_ip(str(ip["address"]).split("/")[0])
        except (KeyError, TypeError, ValueError):
            raise CniError(DELEGATE_RESULT, f"IPAM plugin {plugin} returned a bad address",
                           repr(ip)) from None
        out.setdefault(version, (version, value))
    if not out:
        raise CniError(DELEGATE_RESULT, f"IPAM plugin {plugin} returned no address")
    return [out[v] for v in sorted(out)]


# --- DEL ---------------------------------------------------------------------------------

def cmd_del(env: Env, conf: NetConf, store: Store | None = None) -> None:
    host = veth_name(env.container_id, env.ifname)
    with nl.Netlink() as hnl:
        try:
            # The pod end, its addresses and routes and our /32 and /128 go with the pair.
            hnl.batch([nl.req_dellink(host)], tolerate=(errno.ENODEV,))
        except nl.NetlinkError as exc:
            raise _netlink_error(exc) from None
    if conf.delegated:
        from cni import delegate

        delegate.run(conf.ipam_type, env.path, "DEL", conf.raw)
    release_attachment(store or _store(conf), host, env.container_id, env.ifname)


def release_attachment(store: Store, key: str, cid: str, ifname: str) -> list[str]:
    """DEL's IPAM step: succeeds when nothing is left, and when there was nothing."""
    with store:
        released = alloc.release_all(store, key, cid, ifname)
        store.remove_attachment(key)
    return released


# --- CHECK -------------------------------------------------------------------------------

def cmd_check(env: Env, conf: NetConf, store: Store | None = None) -> None:
    if conf.prev_result is None:
        raise CniError(INVALID_CONFIG, "CHECK needs prevResult")
    host = veth_name(env.container_id, env.ifname)
    store = store or _store(conf)
    rec = store.read_attachment(host)
    if rec is None or rec[:2] != (env.container_id, env.ifname):
        raise CniError(UNKNOWN_CONTAINER,
                       f"no attachment for container {env.container_id} ifname {env.ifname}")
    addresses = [addr.parse_ip(a) for a in rec[2]]
    problems: list[str] = []
    pl = pools(conf) if not conf.delegated else Pools([], conf.mtu or 1500, GATEWAY_V4,
                                                      GATEWAY_V6, CNI_ROUTE_PROTOCOL)
    protos = (pl.protocol, LEGACY_POD_ROUTE_PROTOCOL)  # pods made before an upgrade: 70
    if not conf.delegated:
        for a in rec[2]:
            owner = store.owner(a)
            if owner != (env.container_id, env.ifname):
                problems.append(f"reservation {a}: " + ("missing" if owner is None else
                                                       f"held by {owner[0]}/{owner[1]}"))
    prev_ips = set()
    for ip in conf.prev_result.get("ips") or ():
        if isinstance(ip, dict) and isinstance(ip.get("address"), str):
            prev_ips.add(ip["address"].split("/")[0])
    for v, value in addresses:
        if addr.fmt(v, value) not in prev_ips:
            problems.append(f"prevResult: address {addr.fmt(v, value)} missing")

    with nl.Netlink() as hnl:
        hlink = nl.get_link(hnl, host)
        if hlink is None:
            problems.append(f"host veth {host}: missing")
        else:
            if not hlink.flags & nl.IFF_UP:
                problems.append(f"host veth {host}: down")
            routes = {f: nl.routes(hnl, f) for f in (nl.AF_INET, nl.AF_INET6)}
            for v, value in addresses:
                fam = addr.family(v)
                want = addr.packed(v, value)
                if not any(r.dst == want and r.dst_len == addr.BITS[v] and r.oif == hlink.index
                           and r.protocol in protos for r in routes[fam]):
                    problems.append(f"host route {addr.fmt(v, value)}/{addr.BITS[v]} dev {host} "
                                    f"proto {pl.protocol}: missing")
            try:
                for name, want_v in (("proxy_arp", "1"), ("forwarding", "1")):
                    with open(f"/proc/sys/net/ipv4/conf/{host}/{name}", encoding="ascii") as fh:
                        if fh.read().strip() != want_v:
                            problems.append(f"host veth {host}: net.ipv4.conf.{name} != {want_v}")
            except OSError:
                pass
    try:
        pod_fd = _open_netns(env.netns)
    except CniError:
        problems.append(f"netns {env.netns}: missing")
        pod_fd = -1
    if pod_fd >= 0:
        try:
            with _netns_socket(pod_fd, env.netns) as pnl:
                _check_pod(pnl, env, pl, addresses, problems)
        finally:
            os.close(pod_fd)
    if conf.delegated:
        from cni import delegate

        try:
            delegate.run(conf.ipam_type, env.path, "CHECK", conf.raw)
        except DelegateError as exc:
            problems.append(f"IPAM {conf.ipam_type}: {exc.msg}")
    if problems:
        raise CniError(CHECK_FAILED, f"CHECK found {len(problems)} problem(s)",
                       "; ".join(problems))


def _check_pod(pnl: nl.Netlink, env: Env, pl: Pools, addresses: list[tuple[int, int]],
               problems: list[str]) -> None:
    plink = nl.get_link(pnl, env.ifname)
    if plink is None:
        problems.append(f"pod interface {env.ifname}: missing")
        return
    if not plink.flags & nl.IFF_UP:
        problems.append(f"pod interface {env.ifname}: down")
    gws = {addr.V4: addr.parse_ip(pl.gw4)[1], addr.V6: addr.parse_ip(pl.gw6)[1]}
    for v, value in addresses:
        fam = addr.family(v)
        want = addr.packed(v, value)
        if not any(a.addr == want and a.index == plink.index for a in nl.addrs(pnl, fam)):
            problems.append(f"pod address {addr.fmt(v, value)}/{addr.BITS[v]} on {env.ifname}: "
                            "missing")
        gw = addr.packed(v, gws[v])
        if not any(r.dst_len == 0 and r.oif == plink.index and r.gateway == gw and r.table == 254
                   for r in nl.routes(pnl, fam)):
            problems.append(f"pod default route via {addr.fmt(v, gws[v])} dev {env.ifname}: "
                            "missing")


# --- GC ----------------------------------------------------------------------------------

def cmd_gc(env: Env, conf: NetConf, store: Store | None = None) -> None:
    if conf.valid_attachments is None:
        raise CniError(INVALID_CONFIG, "GC needs cni.dev/valid-attachments")
    valid = set(conf.valid_attachments)
    valid_names = {veth_name(c, i): (c, i) for c, i in valid}
    delegate_del: Callable[[str, str], object] | None = None
    if conf.delegated:
        from cni import delegate

        def delegate_del(cid: str, ifname: str) -> object:
            return delegate.run(conf.ipam_type, env.path, "DEL", conf.raw,
                                {"CNI_CONTAINERID": cid, "CNI_IFNAME": ifname, "CNI_NETNS": ""})

    kept = collect_garbage(store or _store(conf), valid, delegate_del)
    owned = {k: [addr.parse_ip(a) for a in v] for k, v in kept.items()}
    with nl.Netlink() as hnl:
        try:
            ours = {link.index: link.name for link in nl.links(hnl)
                    if is_our_veth(link.name) and link.kind == "veth"}
            doomed = [nl.req_dellink(index=i) for i, n in ours.items() if n not in valid_names]
            if doomed:
                hnl.batch(doomed, tolerate=(errno.ENODEV,))
            # Our routes on a valid veth that no longer belong to its attachment.
            protos = pod_route_protocols(conf)
            extra = []
            for fam in (nl.AF_INET, nl.AF_INET6):
                for r in nl.routes(hnl, fam):
                    name = ours.get(r.oif)
                    if name is None or name not in valid_names or r.protocol not in protos:
                        continue
                    v = addr.V4 if fam == nl.AF_INET else addr.V6
                    if (v, int.from_bytes(r.dst, "big")) not in owned.get(name, []):
                        extra.append(nl.req_route(fam, r.dst, r.dst_len, r.oif, r.protocol,
                                                  delete=True))
            if extra:
                hnl.batch(extra, tolerate=(errno.ESRCH, errno.ENODEV))
        except nl.NetlinkError as exc:
            raise _netlink_error(exc) from None
    if conf.delegated:
        from cni import delegate

        # A delegate older than 1.1.0 knows no GC: the DELs above did its part.
        if delegate.supports(conf.ipam_type, env.path, "1.1.0"):
            delegate.run(conf.ipam_type, env.path, "GC", conf.raw)


def collect_garbage(store: Store, valid: set[tuple[str, str]],
                    delegate_del: Callable[[str, str], object] | None = None,
                    ) -> dict[str, list[str]]:
    """GC's IPAM step: release every attachment and reservation not in `valid` (DELeting
    each stale attachment through the delegated plugin, if any); returns the valid
    attachments' addresses by key."""
    with store:
        stale, kept = alloc.collect(store, valid)
        for key, cid, ifname in stale:
            if delegate_del is not None:
                delegate_del(cid, ifname)
                store.remove_attachment(key)
            else:
                alloc.release_all(store, key, cid, ifname)
        if delegate_del is None:
            alloc.release_invalid(store, valid)
    return kept


# --- STATUS ------------------------------------------------------------------------------

def cmd_status(env: Env, conf: NetConf, store: Store | None = None) -> None:
    if conf.delegated:
        from cni import delegate

        try:
            delegate.find(conf.ipam_type, env.path)
        except CniError as exc:
            raise CniError(NOT_AVAILABLE, exc.msg, exc.details) from None
        if delegate.supports(conf.ipam_type, env.path, "1.1.0"):
            delegate.run(conf.ipam_type, env.path, "STATUS", conf.raw)
    pl = pools(conf)
    store = store or _store(conf)
    try:
        store.check_usable()
    except OSError as exc:
        raise CniError(NOT_AVAILABLE, f"data directory {store.where} is unusable",
                       exc.strerror or "") from None
    if conf.delegated:
        return
    outside = []
    for address in store.reservations():
        try:
            v, value = addr.parse_ip(address)
        except ValueError:
            continue
        if not any(value in r for rset in pl.rangesets for r in rset if r.version == v):
            outside.append(address)
    if outside:
        raise CniError(DEGRADED, "pods hold addresses outside this node's pod blocks",
                       f"the fabric no longer routes {', '.join(sorted(outside)[:10])} here")

