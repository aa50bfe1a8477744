"""GC: release every attachment and reservation not in `cni.dev/valid-attachments`, delete the
`flr*` veths of no valid attachment (their routes go with them) and our routes on a valid veth
that are not its attachment's addresses. Never another interface, nor its routes."""

from __future__ import annotations

import errno

from cni import addr, alloc, verbs
from cni import netlink as nl
from cni.errors import INVALID_CONFIG, CniError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: `import typing` costs ~20 ms of start-up
if TYPE_CHECKING:
    from collections.abc import Callable

    from cni.config import Env, NetConf
    from cni.store import Store


def cmd_gc(env: Env, conf: NetConf, store: Store | None = None) -> None:
    if conf.valid_attachments is None:
        raise CniError(INVALID_CONFIG, "GC needs cni.dev/valid-attachments")
    valid = set(conf.valid_attachments)
    delegate_del: Callable[[str, str], object] | None = None
    if conf.delegated:
        from cni import delegate

        def delegate_del(cid: str, ifname: str) -> object:
            return delegate.run(conf.ipam_type, env.path, "DEL", conf.raw,
                                {"CNI_CONTAINERID": cid, "CNI_IFNAME": ifname, "CNI_NETNS": ""})

    kept = collect_garbage(store or verbs.open_store(conf), valid, delegate_del)
    owned = {k: [addr.parse_ip(a) for a in v] for k, v in kept.items()}
    valid_names = {verbs.veth_name(c, i) for c, i in valid}
    with verbs.host_netlink() as hnl:
        try:
            collect_links(hnl, valid_names, owned, verbs.pod_route_protocols(conf))
        except nl.NetlinkError as exc:
            raise verbs.netlink_error(exc) from None
    if conf.delegated:
        from cni import delegate

        # A delegate older than 1.1.0 knows no GC: the DELs above did its part.
        if delegate.supports(conf.ipam_type, env.path, "1.1.0"):
            delegate.run(conf.ipam_type, env.path, "GC", conf.raw)


def collect_links(hnl: nl.Netlink, valid_names: set[str], owned: dict[str, list[tuple[int, int]]],
                  protos: frozenset[int]) -> None:
    """GC's kernel step: our veths of no valid attachment go; so do our routes on a valid veth
    that are not its attachment's addresses."""
    ours = {link.index: link.name for link in nl.links(hnl)
            if verbs.is_our_veth(link.name) and link.kind == "veth"}
    doomed = [nl.req_dellink(index=i) for i, n in ours.items() if n not in valid_names]
    if doomed:
        hnl.batch(doomed, tolerate=(errno.ENODEV,))
    extra = []
    for fam, v in ((nl.AF_INET, addr.V4), (nl.AF_INET6, addr.V6)):
        for r in nl.routes(hnl, fam):
            name = ours.get(r.oif)
            if name is None or name not in valid_names or r.protocol not in protos:
                continue
            if (v, int.from_bytes(r.dst, "big")) not in owned.get(name, []):
                extra.append(nl.req_route(fam, r.dst, r.dst_len, r.oif, r.protocol,
                                          delete=True))
    if extra:
        hnl.batch(extra, tolerate=(errno.ESRCH, errno.ENODEV))


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
