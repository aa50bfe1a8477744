"""CHECK: record, reservations, prevResult's IPs, host veth up, host routes (dst, oif,
protocol), proxy_arp/forwarding, and in the pod the interface, up, its addresses and both
default routes. Every difference is listed in the error's `details`."""

from __future__ import annotations

import os

from cni import addr, verbs
from cni import netlink as nl
from cni.config import GATEWAY_V4, GATEWAY_V6, LEGACY_POD_ROUTE_PROTOCOL
from cni.errors import CHECK_FAILED, INVALID_CONFIG, UNKNOWN_CONTAINER, CniError, DelegateError
from flatroute import CNI_ROUTE_PROTOCOL

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: `import typing` costs ~20 ms of start-up
if TYPE_CHECKING:
    from cni.config import Env, NetConf
    from cni.store import Store

    Address = tuple[int, int]  # (version, value)


def cmd_check(env: Env, conf: NetConf, store: Store | None = None) -> None:
    if conf.prev_result is None:
        raise CniError(INVALID_CONFIG, "CHECK needs prevResult")
    host = verbs.veth_name(env.container_id, env.ifname)
    store = store or verbs.open_store(conf)
    rec = store.read_attachment(host)
    if rec is None or rec[:2] != (env.container_id, env.ifname):
        raise CniError(UNKNOWN_CONTAINER,
                       f"no attachment for container {env.container_id} ifname {env.ifname}")
    addresses = [addr.parse_ip(a) for a in rec[2]]
    pl = verbs.pools(conf) if not conf.delegated else verbs.Pools(
        [], conf.mtu or 1500, GATEWAY_V4, GATEWAY_V6, CNI_ROUTE_PROTOCOL)
    problems: list[str] = []
    if not conf.delegated:
        _check_reservations(store, env, rec[2], problems)
    _check_prev_result(conf.prev_result, addresses, problems)
    with verbs.host_netlink() as hnl:
        _check_host(hnl, host, pl.protocol, addresses, problems)
    _check_netns(env, pl, addresses, problems)
    if conf.delegated:
        from cni import delegate

        try:
            delegate.run(conf.ipam_type, env.path, "CHECK", conf.raw)
        except DelegateError as exc:
            problems.append(f"IPAM {conf.ipam_type}: {exc.msg}")
    if problems:
        raise CniError(CHECK_FAILED, f"CHECK found {len(problems)} problem(s)",
                       "; ".join(problems))


def _check_reservations(store: Store, env: Env, addresses: list[str], problems: list[str]
                        ) -> None:
    for a in addresses:
        owner = store.owner(a)
        if owner != (env.container_id, env.ifname):
            problems.append(f"reservation {a}: " + ("missing" if owner is None else
                                                   f"held by {owner[0]}/{owner[1]}"))


def _check_prev_result(prev: dict[str, object], addresses: list[Address], problems: list[str]
                       ) -> None:
    prev_ips = set()
    ips = prev.get("ips")
    for ip in ips if isinstance(ips, list) else ():
        if isinstance(ip, dict) and isinstance(ip.get("address"), str):
            prev_ips.add(ip["address"].split("/")[0])
    for v, value in addresses:
        if addr.fmt(v, value) not in prev_ips:
            problems.append(f"prevResult: address {addr.fmt(v, value)} missing")


def _check_host(hnl: nl.Netlink, host: str, protocol: int, addresses: list[Address],
                problems: list[str]) -> None:
    hlink = nl.get_link(hnl, host)
    if hlink is None:
        problems.append(f"host veth {host}: missing")
        return
    if not hlink.flags & nl.IFF_UP:
        problems.append(f"host veth {host}: down")
    protos = (protocol, LEGACY_POD_ROUTE_PROTOCOL)  # pods made before an upgrade: 70
    routes = {f: nl.routes(hnl, f) for f in (nl.AF_INET, nl.AF_INET6)}
    for v, value in addresses:
        want = addr.packed(v, value)
        if not any(r.dst == want and r.dst_len == addr.BITS[v] and r.oif == hlink.index
                   and r.protocol in protos for r in routes[addr.family(v)]):
            problems.append(f"host route {addr.fmt(v, value)}/{addr.BITS[v]} dev {host} "
                            f"proto {protocol}: missing")
    try:
        for name, want_v in (("proxy_arp", "1"), ("forwarding", "1")):
            with open(f"/proc/sys/net/ipv4/conf/{host}/{name}", encoding="ascii") as fh:
                if fh.read().strip() != want_v:
                    problems.append(f"host veth {host}: net.ipv4.conf.{name} != {want_v}")
    except OSError:
        pass


def _check_netns(env: Env, pl: verbs.Pools, addresses: list[Address], problems: list[str]
                 ) -> None:
    try:
        pod_fd = verbs.open_netns(env.netns)
    except CniError:
        problems.append(f"netns {env.netns}: missing")
        return
    try:
        with verbs.netns_netlink(pod_fd, env.netns) as pnl:
            _check_pod(pnl, env, pl, addresses, problems)
    finally:
        os.close(pod_fd)


def _check_pod(pnl: nl.Netlink, env: Env, pl: verbs.Pools, addresses: list[tuple[int, int]],
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
