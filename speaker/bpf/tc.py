"""tc for the eBPF datapath: our cls_bpf filter on an interface's clsact ingress hook.

Our filter is the one at FILTER_PRIO whose name starts with NAME_PREFIX; its name carries the
program id ("flr_encap:<id>"), so a filter holding another version's program shows as stale.
Nothing else on an interface is ever changed or removed, and clsact goes only when no other
filter remains on it. Every function takes an open pyroute2 IPRoute (`netlink`).
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator, Mapping
from typing import Any

from flatroute.errors import AdapterError

FILTER_PRIO = 0xF1A        # our tc filter's priority ("pref") on clsact ingress
FILTER_HANDLE = 1
NAME_PREFIX = "flr_"
TC_INGRESS = 0xFFFFFFF2
TC_EGRESS = 0xFFFFFFF3
ETH_P_ALL = 0x0003
#: what a missing interface, qdisc or filter answers
_GONE = (errno.ENOENT, errno.EINVAL, errno.ENODEV)


def filter_name(msg: Any) -> str | None:
    opts = msg.get_attr("TCA_OPTIONS")
    if not opts:
        return None
    for key, value in opts.get("attrs", []):
        if key == "TCA_BPF_NAME":
            return str(value)
    return None


def is_ours(msg: Any) -> bool:
    name = filter_name(msg)
    return (msg.get_attr("TCA_KIND") == "bpf" and (msg["info"] >> 16) == FILTER_PRIO
            and name is not None and name.startswith(NAME_PREFIX))


@contextlib.contextmanager
def netlink(netns: str | None) -> Iterator[Any]:
    """An IPRoute in netns (or our own); netlink errors become AdapterError."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        ipr = IPRoute(netns=netns, flags=0) if netns else IPRoute()
    except (OSError, NetlinkError) as e:
        raise AdapterError(f"cannot open netlink in netns {netns or '(own)'}: {e}") from e
    try:
        yield ipr
    except NetlinkError as e:
        raise AdapterError(f"tc request failed: {e}") from e
    finally:
        ipr.close()


def index(ipr: Any, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return int(found[0]) if found else None


def filters(ipr: Any, idx: int, parent: int) -> list[Any]:
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        return [m for m in ipr.get_filters(index=idx, parent=parent)
                if m.get_attr("TCA_OPTIONS") is not None]
    except NetlinkError as e:
        if e.code in (errno.EINVAL, errno.ENOENT, errno.ENODEV):
            return []  # no clsact qdisc
        raise


def attach(ipr: Any, idx: int, prog_fd: int, name: str) -> bool:
    """Our filter named `name` (program fd prog_fd) on idx's ingress; True if it changed."""
    from pyroute2.netlink.exceptions import NetlinkError

    ours = [m for m in filters(ipr, idx, TC_INGRESS) if is_ours(m)]
    if len(ours) == 1 and filter_name(ours[0]) == name:
        return False
    try:
        ipr.tc("add", "clsact", idx)
    except NetlinkError as e:
        if e.code != errno.EEXIST:
            raise
    ipr.tc("replace-filter", "bpf", idx, f":{FILTER_HANDLE}", fd=prog_fd,
           name=name, parent=TC_INGRESS, classid=1, direct_action=True,
           prio=FILTER_PRIO, protocol=ETH_P_ALL)
    # a stray second filter of ours at our prio (other handle) would shadow nothing,
    # but remove it so exactly one remains
    for m in ours:
        if m["handle"] != FILTER_HANDLE:
            del_filter(ipr, idx, m["handle"])
    return True


def del_filter(ipr: Any, idx: int, handle: int) -> None:
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        ipr.tc("del-filter", "bpf", idx, handle, parent=TC_INGRESS, prio=FILTER_PRIO,
               protocol=ETH_P_ALL)
    except NetlinkError as e:
        if e.code not in _GONE:
            raise


def attached(ipr: Any, prog_ids: Mapping[str, int]) -> dict[str, str]:
    """ifname -> program name for every interface carrying our filter ("<name> (stale)" when
    the filter holds a program other than prog_ids names)."""
    out: dict[str, str] = {}
    for link in ipr.get_links():
        name = link.get_attr("IFLA_IFNAME")
        for m in filters(ipr, link["index"], TC_INGRESS):
            if is_ours(m):
                fname = filter_name(m) or ""
                prog, _, pid = fname.partition(":")
                current = prog_ids.get(prog)
                # a filter holding another version's program is not what we want
                stale = current is not None and pid != str(current)
                out[name] = f"{prog} (stale)" if stale else prog
    return out


def detach(ipr: Any, idx: int) -> None:
    """Remove our filter from idx; remove clsact only when no other filter remains."""
    from pyroute2.netlink.exceptions import NetlinkError

    ingress = filters(ipr, idx, TC_INGRESS)
    ours = [m for m in ingress if is_ours(m)]
    if not ours:
        return
    for m in ours:
        del_filter(ipr, idx, m["handle"])
    rest = [m for m in filters(ipr, idx, TC_INGRESS) if not is_ours(m)]
    rest += filters(ipr, idx, TC_EGRESS)
    if not rest:
        try:
            ipr.tc("del", "clsact", idx)
        except NetlinkError as e:
            if e.code not in _GONE:
                raise
