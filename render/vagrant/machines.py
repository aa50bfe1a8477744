"""The Vagrant lab's machine model: one VM per router and node, its size, its NICs (each on a
provider network with a fixed MAC, named by the naming rule) and the rendered files uploaded
to it."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass

from flatroute.fabric.model import Fabric, Router
from flatroute.fabric.wiring import ROUTER_LINKS, LinkKind, Role, Wiring, wire
from flatroute.plan.model import Plan

#: where the provisioner uploads a VM's rendered files
UPLOAD_DIR = "/tmp/flatroute"
#: VirtualBox offers eight adapters; the first is Vagrant's management NAT
VIRTUALBOX_MAX_NICS = 7
MEMORY = {Role.TOR: 768, Role.SPINE: 768, Role.WAN: 768, Role.NODE: 1536}
CPUS = {Role.TOR: 1, Role.SPINE: 1, Role.WAN: 1, Role.NODE: 2}


@dataclass(frozen=True, slots=True)
class Nic:
    network: str  # the provider network (VirtualBox intnet / libvirt network name)
    mac: str  # aa:bb:cc:dd:ee:ff
    ifname: str  # the name the provisioning script gives it
    peer: str  # what is at the other end, for humans
    addresses: tuple[str, ...] = ()  # CIDRs the provisioning script sets


@dataclass(frozen=True, slots=True)
class Machine:
    name: str
    role: Role
    nics: tuple[Nic, ...]
    files: tuple[str, ...]  # rendered files uploaded to UPLOAD_DIR, relative to the lab

    @property
    def memory(self) -> int:
        return MEMORY[self.role]

    @property
    def cpus(self) -> int:
        return CPUS[self.role]



def net_part(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", name)

# -- topology ---------------------------------------------------------------------------------
def machines(fabric: Fabric, plan: Plan) -> list[Machine]:
    """One VM per router (ToRs, spines, WAN routers) and per node, with their NICs."""
    w = wire(without_ports(fabric), plan)  # lab interfaces follow the naming rule
    nics = _nics(w, f"flatroute-{net_part(fabric.name)}")
    out: list[Machine] = []
    for r in w.routers:
        files = [f"configs/{r.name}/frr.conf"]
        if r.router.locator is not None:
            files.append(f"configs/{r.name}/srv6.sh")
        out.append(Machine(r.name, r.role, tuple(nics.by_vm[r.name]), tuple(files)))
    for node in w.nodes:
        files = [f"configs/{node.name}/nodestate.json"]
        if fabric.bgp.md5 is not None:
            files.append(f"configs/{node.name}/bgp-md5.secret")
        out.append(Machine(node.name, Role.NODE, tuple(nics.by_vm[node.name]), tuple(files)))
    return out


def _nics(w: Wiring, prefix: str) -> _Nics:
    """A network per router link, per numbered ToR's server subnet (its rack's nodes join it)
    and per uplink to an unnumbered ToR (a NIC on the ToR too), in that order."""
    nics = _Nics(w.fabric)
    for name in [r.name for r in w.routers] + [n.name for n in w.nodes]:
        nics.by_vm.setdefault(name, [])
    for lk in w.links:
        if lk.kind in ROUTER_LINKS:
            network = f"{prefix}-{net_part(lk.a.name)}--{net_part(lk.b.name)}"
            nics.add(lk.a.name, network, lk.a.ifname, lk.b.name)
            nics.add(lk.b.name, network, lk.b.ifname, lk.a.name)
    for s in w.servers:
        nics.add(s.tor, f"{prefix}-{net_part(s.tor)}-servers", s.ifname,
                 "its rack's nodes (server subnet)", tuple(str(a) for a in s.addresses))
    for lk in w.links:
        node, tor = lk.a, lk.b
        if lk.kind is LinkKind.UNNUMBERED:
            network = f"{prefix}-{net_part(tor.name)}--{net_part(node.name)}"
            nics.add(tor.name, network, tor.ifname, node.name)
        elif lk.kind is LinkKind.SERVER:
            network = f"{prefix}-{net_part(tor.name)}-servers"
        else:
            continue
        nics.add(node.name, network, node.ifname, tor.name,
                 tuple(str(a) for a in node.addresses))
    return nics


@dataclass
class _Nics:
    """The NICs of every VM, each with a MAC derived from the fabric, the VM and the network
    (a clash takes the next salt, so MACs depend on the order NICs are added)."""

    fabric_name: str
    by_vm: dict[str, list[Nic]] = dataclasses.field(default_factory=dict)
    used_macs: set[str] = dataclasses.field(default_factory=set)

    def mac(self, vm: str, network: str) -> str:
        salt = 0
        while True:
            digest = hashlib.sha256(f"{self.fabric_name}|{vm}|{network}|{salt}".encode()).digest()
            value = "02:" + ":".join(f"{b:02x}" for b in digest[:5])
            if value not in self.used_macs:
                self.used_macs.add(value)
                return value
            salt += 1

    def add(self, vm: str, network: str, name: str, peer: str,
            addresses: tuple[str, ...] = ()) -> None:
        self.by_vm.setdefault(vm, []).append(Nic(network, self.mac(vm, network), name, peer,
                                                 addresses))


def lab_secret(fabric: Fabric) -> str:
    """A fixed, lab-only MD5 secret (never a real one: it is derived from the fabric name)."""
    return "fr-lab-" + hashlib.sha256(f"flatroute-lab|{fabric.name}".encode()).hexdigest()[:16]

def without_ports(fabric: Fabric) -> Fabric:
    """The fabric with every router's `ports:` dropped: lab interfaces follow the naming rule."""
    def strip(r: Router) -> Router:
        return dataclasses.replace(r, ports=())

    sites = tuple(dataclasses.replace(
        s, spines=tuple(strip(x) for x in s.spines),
        racks=tuple(dataclasses.replace(rk, tors=tuple(strip(t) for t in rk.tors))
                    for rk in s.racks)) for s in fabric.sites)
    return dataclasses.replace(fabric, sites=sites,
                               wan_routers=tuple(strip(w) for w in fabric.wan_routers))
