"""DEL: delete the host veth by name and release; succeeds when all is gone, with or without
CNI_NETNS."""

from __future__ import annotations

import _thread
import errno
import time

from cni import alloc, verbs
from cni import netlink as nl

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: `import typing` costs ~20 ms of start-up
if TYPE_CHECKING:
    from cni.config import Env, NetConf
    from cni.store import Store


def cmd_del(env: Env, conf: NetConf, store: Store | None = None) -> None:
    host = verbs.veth_name(env.container_id, env.ifname)
    try:
        delete_link(host)
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


def delete_link(name: str, poll: float = 0.0002) -> None:
    """Delete the host veth: the pod end, its addresses and routes and our /32 and /128 go with
    the pair. Returns once the kernel has unlisted the pair, not when RTM_DELLINK returns.

    The kernel unlists a veth pair, flushes its routes and frees its name within ~0.5 ms, then
    the request waits, rtnl already released, for an RCU barrier before it is acknowledged
    (~16 ms measured here, most of a DEL). So a thread sends the request while this one polls
    for the name: gone means done, exactly as any other observer of the kernel sees it; the
    thread's own error, if any, is raised. In `flatroute cni serve` the answer then reaches the
    client at once while the worker process waits out the barrier; an exec'd plugin still
    exits only after it (the process ends when its last thread does).
    """
    outcome: list[BaseException | None] = []

    def send() -> None:
        try:
            with verbs.host_netlink() as hnl:
                hnl.batch([nl.req_dellink(name)], tolerate=(errno.ENODEV,))
            outcome.append(None)
        except BaseException as exc:  # handed to the caller's thread
            outcome.append(exc)

    _thread.start_new_thread(send, ())
    with verbs.host_netlink() as hnl:
        while not outcome and nl.get_link(hnl, name) is not None:
            time.sleep(poll)
    if outcome and outcome[0] is not None:
        raise outcome[0]
