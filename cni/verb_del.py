"""DEL: delete the host veth by name and release; succeeds when all is gone, with or without
CNI_NETNS."""

from __future__ import annotations

import errno

from cni import alloc, verbs
from cni import netlink as nl

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: `import typing` costs ~20 ms of start-up
if TYPE_CHECKING:
    from cni.config import Env, NetConf
    from cni.store import Store


def cmd_del(env: Env, conf: NetConf, store: Store | None = None) -> None:
    host = verbs.veth_name(env.container_id, env.ifname)
    with verbs.host_netlink() as hnl:
        try:
            # The pod end, its addresses and routes and our /32 and /128 go with the pair.
            hnl.batch([nl.req_dellink(host)], tolerate=(errno.ENODEV,))
        except nl.NetlinkError as exc:
            raise verbs.netlink_error(exc) from None
    if conf.delegated:
        from cni import delegate

        delegate.run(conf.ipam_type, env.path, "DEL", conf.raw)
    release_attachment(store or verbs.open_store(conf), host, env.container_id, env.ifname)


def release_attachment(store: Store, key: str, cid: str, ifname: str) -> list[str]:
    """DEL's IPAM step: succeeds when nothing is left, and when there was nothing."""
    with store:
        released = alloc.release_all(store, key, cid, ifname)
        store.remove_attachment(key)
    return released
