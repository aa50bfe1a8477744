"""The kernel settings every host of the fabric needs, the lab's namespaces and the Vagrant
VMs alike: one fact in one place (the lab applies them, the Vagrant renderer writes them)."""

from __future__ import annotations

NODE_SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.ipv6.conf.all.forwarding": "1",
    "net.ipv6.conf.default.accept_dad": "0",
    "net.ipv6.conf.all.accept_dad": "0",
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
    # A dead link must take its next hop out of ECMP at once, not after the BGP hold time.
    "net.ipv4.conf.all.ignore_routes_with_linkdown": "1",
    "net.ipv6.conf.all.ignore_routes_with_linkdown": "1",
    "net.ipv6.conf.all.seg6_enabled": "1",
    "net.ipv6.conf.default.seg6_enabled": "1",
    # Statically configured addresses survive a link going down, as on a real server;
    # Linux's default flushes IPv6 ones, and sessions would not come back after `lab heal`.
    "net.ipv6.conf.all.keep_addr_on_down": "1",
    "net.ipv6.conf.default.keep_addr_on_down": "1",
}
ROUTER_SYSCTLS = {**NODE_SYSCTLS}
