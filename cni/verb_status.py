"""STATUS: the delegate (if any) answers, the store is usable, and no pod holds an address
outside this node's pod blocks (DEGRADED otherwise)."""

from __future__ import annotations

from cni import addr, verbs
from cni.errors import DEGRADED, NOT_AVAILABLE, CniError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: `import typing` costs ~20 ms of start-up
if TYPE_CHECKING:
    from cni.config import Env, NetConf
    from cni.store import Store

def cmd_status(env: Env, conf: NetConf, store: Store | None = None) -> None:
    if conf.delegated:
        from cni import delegate

        try:
            delegate.find(conf.ipam_type, env.path)
        except CniError as exc:
            raise CniError(NOT_AVAILABLE, exc.msg, exc.details) from None
        if delegate.supports(conf.ipam_type, env.path, "1.1.0"):
            delegate.run(conf.ipam_type, env.path, "STATUS", conf.raw)
    pl = verbs.pools(conf)
    store = store or verbs.open_store(conf)
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
