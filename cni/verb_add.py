"""ADD: reserve the addresses, make the veth pair, address and route both ends, print the result.

A failed ADD undoes every step in reverse (`undo`): veth (and with it routes and the pod end),
reservations, attachment record, delegated address.
"""

from __future__ import annotations

import errno
import os

from cni import addr, alloc, verbs
from cni import netlink as nl
from cni.errors import DELEGATE_RESULT, IF_EXISTS, NETLINK, CniError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: `import typing` costs ~20 ms of start-up
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from cni.config import Env, NetConf
    from cni.store import Store

    Undo = list[Callable[[], object]]
    Address = tuple[int, int]  # (version, value)


def cmd_add(env: Env, conf: NetConf, store: Store | None = None) -> dict[str, Any]:
    host = verbs.veth_name(env.container_id, env.ifname)
    undo: Undo = []
    try:
        return _add(env, conf, host, undo, store or verbs.open_store(conf))
    except BaseException:
        for step in reversed(undo):
            try:
                step()
            except Exception:  # best effort; the original error is what matters
                continue
        raise


def _add(env: Env, conf: NetConf, host: str, undo: Undo, store: Store) -> dict[str, Any]:
    pod_fd = verbs.open_netns(env.netns)
    undo.append(lambda: os.close(pod_fd))
    pl = verbs.pools(conf)
    gw = {addr.V4: addr.parse_ip(pl.gw4), addr.V6: addr.parse_ip(pl.gw6)}
    addresses = _reserve(env, conf, host, undo, store, pl, gw)

    hnl = verbs.host_netlink()
    undo.append(hnl.close)
    pnl = verbs.netns_netlink(pod_fd, env.netns)
    undo.append(pnl.close)
    hlink = _make_veth(hnl, env, host, pod_fd, pl.mtu, undo)
    try:
        plink = _set_up_pod(pnl, hlink, addresses, gw, pl.protocol)
        _set_up_host(hnl, hlink, host, addresses, gw, pl.protocol)
    except nl.NetlinkError as exc:
        raise verbs.netlink_error(exc) from None
    except OSError as exc:
        raise CniError(NETLINK, "cannot set the host interface's sysctls",
                       f"{exc.filename}: {exc.strerror}") from None

    # Success: nothing to undo but closing what we opened.
    undo.clear()
    hnl.close()
    pnl.close()
    os.close(pod_fd)
    return _result(env, conf, pl.mtu, hlink, plink, addresses, gw)


def _reserve(env: Env, conf: NetConf, host: str, undo: Undo, store: Store, pl: verbs.Pools,
             gw: dict[int, Address]) -> list[Address]:
    """The IPAM step: the attachment record and one address per family, under the lock."""
    cid, ifname = env.container_id, env.ifname
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
    return addresses


def _make_veth(hnl: nl.Netlink, env: Env, host: str, pod_fd: int, mtu: int, undo: Undo
               ) -> nl.Link:
    """The pair, its peer made straight in the pod netns; returns the host end."""
    try:
        created = hnl.batch([nl.req_veth(host, env.ifname, pod_fd, mtu), nl.req_getlink(host)])
    except nl.NetlinkError as exc:
        if exc.errno == errno.EEXIST:
            if nl.get_link(hnl, host) is not None:
                raise CniError(IF_EXISTS, f"host interface {host} already exists",
                               "a previous ADD of this container and ifname was not deleted"
                               ) from None
            raise CniError(IF_EXISTS, f"interface {env.ifname} already exists in {env.netns}"
                           ) from None
        raise verbs.netlink_error(exc) from None
    undo.append(lambda: hnl.batch([nl.req_dellink(host)], tolerate=(errno.ENODEV,)))
    return nl.Link(created[1][0][1])


def _set_up_pod(pnl: nl.Netlink, hlink: nl.Link, addresses: list[Address],
                gw: dict[int, Address], protocol: int) -> nl.Link:
    """In the pod: link up, its addresses, the gateway's neighbour entry, default routes."""
    pidx = hlink.link
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
        reqs.append(nl.req_route(addr.family(version), b"", 0, pidx, protocol,
                                 gateway=addr.packed(*gw[version]),
                                 onlink=version == addr.V4))
    reqs.append(nl.req_getlink(index=pidx))
    return nl.Link(pnl.batch(reqs)[-1][0][1])


def _set_up_host(hnl: nl.Netlink, hlink: nl.Link, host: str, addresses: list[Address],
                 gw: dict[int, Address], protocol: int) -> None:
    """On the node: sysctls, link up, fe80::1 for IPv6 pods, the /32 and /128 routes."""
    v6 = any(v == addr.V6 for v, _ in addresses)
    _host_sysctls(host, v6)
    reqs = [nl.req_linkup(hlink.index)]
    if v6:
        reqs.append(nl.req_addr(nl.AF_INET6, addr.packed(*gw[addr.V6]), 64, hlink.index))
    for version, value in addresses:
        reqs.append(nl.req_route(addr.family(version), addr.packed(version, value),
                                 addr.BITS[version], hlink.index, protocol))
    hnl.batch(reqs)


def _host_sysctls(name: str, v6: bool) -> None:
    # Per interface only: answer ARP for the gateway, forward what the pod sends.
    verbs.write_sysctl(f"/proc/sys/net/ipv4/conf/{name}/proxy_arp", "1")
    verbs.write_sysctl(f"/proc/sys/net/ipv4/neigh/{name}/proxy_delay", "0")
    verbs.write_sysctl(f"/proc/sys/net/ipv4/conf/{name}/forwarding", "1")
    if v6:
        # Linux >= 6.17; older nodes need net.ipv6.conf.all.forwarding=1 (the speaker's job).
        try:  # noqa: SIM105 - contextlib costs start-up time
            verbs.write_sysctl(f"/proc/sys/net/ipv6/conf/{name}/force_forwarding", "1")
        except FileNotFoundError:
            pass


def _forget(store: Store, key: str, cid: str, ifname: str, reserved: list[str]) -> None:
    """Undo ADD's IPAM step: its reservations and its attachment record, under the lock."""
    with store:
        for text in reserved:
            alloc.release(store, text, cid, ifname)
        store.remove_attachment(key)


def _delegate_add(env: Env, conf: NetConf, undo: Undo) -> dict[str, Any]:
    from cni import delegate

    result = delegate.run(conf.ipam_type, env.path, "ADD", conf.raw)
    undo.append(lambda: delegate.run(conf.ipam_type, env.path, "DEL", conf.raw))
    if result is None:
        raise CniError(DELEGATE_RESULT, f"IPAM plugin {conf.ipam_type} returned no result")
    return result


def _delegated_addresses(result: dict[str, Any], plugin: str) -> list[Address]:
    out: dict[int, Address] = {}
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


# --- the result --------------------------------------------------------------------------------

def _result(env: Env, conf: NetConf, mtu: int, hlink: nl.Link, plink: nl.Link,
            addresses: list[Address], gw: dict[int, Address]) -> dict[str, Any]:
    """The result in the config's version; prevResult's entries kept, ours appended."""
    out = _convert_prev(conf.prev_result, conf.cni_version)
    base = len(out["interfaces"])
    host_if: dict[str, Any] = {"name": hlink.name, "mac": hlink.mac}
    pod_if: dict[str, Any] = {"name": env.ifname, "mac": plink.mac, "sandbox": env.netns}
    if conf.cni_version >= "1.1.0":
        host_if["mtu"] = pod_if["mtu"] = mtu
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


