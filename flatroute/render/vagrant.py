"""`flatroute render FABRIC --platform vagrant`: the same fabric as virtual machines.

`render_vagrant(fabric, plan)` returns the files of a Vagrant lab, paths relative to its
directory: `Vagrantfile`, `provision/<vm>.sh`, `configs/<router>/frr.conf` (and `srv6.sh`
for routers with an End SID), `configs/<node>/nodestate.json` and `README.md`. The output
is a pure function of its input, byte for byte.

The shape is the fabric's wiring (`flatroute.fabric.wiring`), as in `flatroute lab`: one VM
per router and node; one private network per router-to-router link; one network per ToR
server subnet, shared by the ToR and its rack's nodes (an unnumbered ToR gets one network per
node instead). Every NIC has a fixed MAC; the provisioning script renames it to the naming
rule (`naming.ifname`, the ToR's `servers` SVI) and sets the plan's addresses. Vagrant
configures nothing on these NICs (`auto_config: false`) and is never given their addresses:
with an `ip:` vagrant-libvirt would create the network with the host's bridge on the subnet's
first address, which is the ToR's.

Routers run FRR with the configs `flatroute render --platform frr` produces (router `ports:`
are dropped: in the lab every interface follows the naming rule). Nodes install flatroute
from the synced source tree, get their NodeState (`flatroute.nodestate.to_json`, what the
controller would publish), run the speaker as a systemd unit and install the CNI plugin.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import shlex
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv6Interface
from pathlib import PurePath

from flatroute import __version__
from flatroute.errors import FieldError, InvalidInput
from flatroute.fabric.hosts import NODE_SYSCTLS, ROUTER_SYSCTLS
from flatroute.fabric.model import Fabric, Router
from flatroute.fabric.wiring import ROUTER_LINKS, LinkKind, Role, Wiring, wire
from flatroute.nodestate import from_plan, to_json
from flatroute.plan.model import Plan
from flatroute.render import render
from flatroute.render.common import ROLE_NAMES, RenderedFile
from flatroute.render.frr import daemons_for

NAME = "vagrant"
BOX = "debian/bookworm64"
#: where the provisioner uploads a VM's rendered files
UPLOAD_DIR = "/tmp/flatroute"
#: the node state the speaker reads, and the static-mode layout the lab's speaker reads
NODE_STATE = "/etc/flatroute/nodestate.json"
STATE_DIR = "/var/lib/flatroute/state"
NODE_FILE = "/run/flatroute/node.json"
RUN_DIR = "/run/flatroute/speaker"
VENV = "/opt/flatroute"
#: the MD5 secret on nodes and ToRs when the fabric asks for MD5 (a lab-only secret)
MD5_FILE = "/etc/flatroute/bgp-md5.secret"
#: VirtualBox offers eight adapters; the first is Vagrant's management NAT
VIRTUALBOX_MAX_NICS = 7
MEMORY = {Role.TOR: 768, Role.SPINE: 768, Role.WAN: 768, Role.NODE: 1536}
CPUS = {Role.TOR: 1, Role.SPINE: 1, Role.WAN: 1, Role.NODE: 2}
RSYNC_EXCLUDE = (".git/", ".venv/", "venv/", ".mypy_cache/", ".ruff_cache/",
                 ".pytest_cache/", "__pycache__/", "*.egg-info/", "build/", "dist/",
                 ".vagrant/")


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


# -- escaping ---------------------------------------------------------------------------------
def ruby_str(text: str) -> str:
    """A double-quoted Ruby string literal that evaluates to exactly `text`."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in '"\\#':
            out.append("\\" + ch)  # `#` too: "#{" and "#@" would interpolate
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif code > 0x7E:
            out.append(f"\\u{{{code:x}}}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _comment(text: str) -> str:
    """One comment line's text: no control characters (a newline would end the comment)."""
    return "".join(" " if ord(c) < 0x20 or ord(c) == 0x7F else c for c in text).rstrip()


def _net_part(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", name)


# -- topology ---------------------------------------------------------------------------------
def machines(fabric: Fabric, plan: Plan) -> list[Machine]:
    """One VM per router (ToRs, spines, WAN routers) and per node, with their NICs."""
    w = wire(_without_ports(fabric), plan)  # lab interfaces follow the naming rule
    nics = _nics(w, f"flatroute-{_net_part(fabric.name)}")
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
            network = f"{prefix}-{_net_part(lk.a.name)}--{_net_part(lk.b.name)}"
            nics.add(lk.a.name, network, lk.a.ifname, lk.b.name)
            nics.add(lk.b.name, network, lk.b.ifname, lk.a.name)
    for s in w.servers:
        nics.add(s.tor, f"{prefix}-{_net_part(s.tor)}-servers", s.ifname,
                 "its rack's nodes (server subnet)", tuple(str(a) for a in s.addresses))
    for lk in w.links:
        node, tor = lk.a, lk.b
        if lk.kind is LinkKind.UNNUMBERED:
            network = f"{prefix}-{_net_part(tor.name)}--{_net_part(node.name)}"
            nics.add(tor.name, network, tor.ifname, node.name)
        elif lk.kind is LinkKind.SERVER:
            network = f"{prefix}-{_net_part(tor.name)}-servers"
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


# -- rendering --------------------------------------------------------------------------------
def render_vagrant(fabric: Fabric, plan: Plan) -> list[RenderedFile]:
    """Every file of the Vagrant lab; InvalidInput when the fabric cannot be planned."""
    if plan.problems:
        raise InvalidInput([FieldError(fabric.source, "spec.nodes", f"cannot plan: {x}")
                            for x in plan.problems])
    lab_fabric = _without_ports(fabric)
    secret = lab_secret(fabric) if fabric.bgp.md5 is not None else None
    router_files: dict[str, dict[str, str]] = {}
    for f in render(lab_fabric, plan, platform="frr"):
        text = f.text
        if secret is not None:
            text = text.replace("FLATROUTE-MD5-PLACEHOLDER", secret)
        kind = "srv6.sh" if f.name.endswith(".srv6.sh") else "frr.conf"
        router_files.setdefault(f.router, {})[kind] = text
    vms = machines(fabric, plan)
    files: list[RenderedFile] = [RenderedFile("", NAME, "Vagrantfile", vagrantfile(fabric, vms))]
    for vm in vms:
        if vm.role is Role.NODE:
            state = from_plan(plan, plan.node(vm.name))
            if secret is not None:
                state = dataclasses.replace(state, bgp=dataclasses.replace(
                    state.bgp, md5_file=MD5_FILE, md5_kubernetes=None))
            files.append(RenderedFile(vm.name, NAME, f"configs/{vm.name}/nodestate.json",
                                      to_json(state)))
            script = node_script(fabric, vm)
        else:
            texts = router_files[vm.name]
            for kind in sorted(texts):
                files.append(RenderedFile(vm.name, NAME, f"configs/{vm.name}/{kind}",
                                          texts[kind]))
            script = router_script(fabric, vm, texts["frr.conf"])
        if secret is not None and any(f.endswith("bgp-md5.secret") for f in vm.files):
            files.append(RenderedFile(vm.name, NAME, f"configs/{vm.name}/bgp-md5.secret",
                                      secret + "\n"))
        files.append(RenderedFile(vm.name, NAME, f"provision/{vm.name}.sh", script))
    files.append(RenderedFile("", NAME, "README.md", readme(fabric, plan, vms)))
    return files


def _without_ports(fabric: Fabric) -> Fabric:
    """The fabric with every router's `ports:` dropped: lab interfaces follow the naming rule."""
    def strip(r: Router) -> Router:
        return dataclasses.replace(r, ports=())

    sites = tuple(dataclasses.replace(
        s, spines=tuple(strip(x) for x in s.spines),
        racks=tuple(dataclasses.replace(rk, tors=tuple(strip(t) for t in rk.tors))
                    for rk in s.racks)) for s in fabric.sites)
    return dataclasses.replace(fabric, sites=sites,
                               wan_routers=tuple(strip(w) for w in fabric.wan_routers))


def _header(fabric: Fabric, marker: str) -> list[str]:
    return [
        f"{marker} flatroute render --platform vagrant: fabric {_comment(fabric.name)}",
        f"{marker} generated by flatroute {__version__}; do not edit by hand: change the "
        "fabric and re-render",
    ]


def vagrantfile(fabric: Fabric, vms: list[Machine]) -> str:
    out = _vagrantfile_head(fabric)
    out += _machines_rb(vms)
    out += _vagrant_configure()
    return "\n".join(out) + "\n"


def _vagrantfile_head(fabric: Fabric) -> list[str]:
    """The comment, the source tree lookup, the box and the rsync exclusions."""
    return ["# -*- mode: ruby -*-", "# vi: set ft=ruby :", *_header(fabric, "#"), "#",
           "# One VM per router and node; one private network per link and per ToR server",
           "# subnet. Vagrant configures nothing on these NICs (auto_config: false): each",
           "# provision/<vm>.sh renames them by MAC and sets the plan's addresses.",
           "# Providers: libvirt and VirtualBox. See README.md.",
           "",
           "LAB_DIR = File.dirname(File.expand_path(__FILE__))",
           "# The flatroute source tree the nodes install from (synced to /vagrant): the",
           "# nearest directory above this one holding pyproject.toml, or $FLATROUTE_SRC.",
           'FLATROUTE_SRC = ENV.fetch("FLATROUTE_SRC") do',
           "  dir = LAB_DIR",
           '  until File.exist?(File.join(dir, "pyproject.toml")) || File.dirname(dir) == dir',
           "    dir = File.dirname(dir)",
           "  end",
           "  dir",
           "end",
           f'BOX = ENV.fetch("FLATROUTE_BOX", {ruby_str(BOX)})',
           "RSYNC_EXCLUDE = [",
           *(f"  {ruby_str(x)}," for x in RSYNC_EXCLUDE),
           "].freeze",
           "",
           "# name => role, size, NICs (network, MAC, the name provisioning gives it, what is",
           "# at the other end, the addresses provisioning sets) and the rendered files",
           f"# uploaded to {UPLOAD_DIR}/.",
           "MACHINES = {"]


def _machines_rb(vms: list[Machine]) -> list[str]:
    """The body of the MACHINES hash: each VM's role, size, NICs and files."""
    out: list[str] = []
    for vm in vms:
        out.append(f"  {ruby_str(vm.name)} => {{")
        out.append(f"    role: {ruby_str(vm.role)}, memory: {vm.memory}, cpus: {vm.cpus},")
        out.append("    nics: [")
        for n in vm.nics:
            addrs = "[" + ", ".join(ruby_str(a) for a in n.addresses) + "]"
            out.append(f"      {{ network: {ruby_str(n.network)}, mac: {ruby_str(n.mac)}, "
                       f"ifname: {ruby_str(n.ifname)},")
            out.append(f"        peer: {ruby_str(n.peer)}, addresses: {addrs} }},")
        out.append("    ],")
        out.append("    files: [" + ", ".join(ruby_str(f) for f in vm.files) + "],")
        out.append("  },")
    return out


def _vagrant_configure() -> list[str]:
    """The end of MACHINES, and the Vagrant configuration that defines a VM from each entry."""
    return [
        "}.freeze",
        "",
        'Vagrant.configure("2") do |config|',
        "  config.vm.box = BOX",
        "  config.vm.box_check_update = false",
        "  config.vm.provider :virtualbox do |vb|",
        "    vb.linked_clone = true",
        "  end",
        "",
        "  MACHINES.each do |name, vm|",
        "    config.vm.define name do |m|",
        "      m.vm.hostname = name",
        "      m.vm.provider :libvirt do |lv|",
        "        lv.memory = vm[:memory]",
        "        lv.cpus = vm[:cpus]",
        "      end",
        "      m.vm.provider :virtualbox do |vb|",
        "        vb.memory = vm[:memory]",
        "        vb.cpus = vm[:cpus]",
        "        # the internal networks carry BGP between VMs: let every frame through",
        "        vm[:nics].each_index do |i|",
        '          vb.customize ["modifyvm", :id, "--nicpromisc#{i + 2}", "allow-all"]',
        "        end",
        "      end",
        "      vm[:nics].each do |nic|",
        '        m.vm.network "private_network", auto_config: false,',
        "          virtualbox__intnet: nic[:network],",
        '          virtualbox__mac: nic[:mac].delete(":"),',
        "          libvirt__network_name: nic[:network],",
        '          libvirt__forward_mode: "none",',
        "          libvirt__dhcp_enabled: false,",
        "          libvirt__mac: nic[:mac]",
        "      end",
        '      if vm[:role] == "node"',
        '        m.vm.synced_folder FLATROUTE_SRC, "/vagrant", type: "rsync",',
        "          rsync__exclude: RSYNC_EXCLUDE",
        "      else",
        '        m.vm.synced_folder ".", "/vagrant", disabled: true',
        "      end",
        "      vm[:files].each do |f|",
        '        m.vm.provision "file", source: File.join(LAB_DIR, f),',
        f'          destination: "{UPLOAD_DIR}/#{{File.basename(f)}}"',
        "      end",
        '      m.vm.provision "shell", path: File.join(LAB_DIR, "provision", "#{name}.sh")',
        "    end",
        "  end",
        "end",
    ]


# -- provisioning scripts ---------------------------------------------------------------------
q = shlex.quote


def _links_script(vm: Machine, sysctls: dict[str, str]) -> list[str]:
    """/usr/local/sbin/flatroute-links: names, addresses and sysctls, at every boot."""
    conf = [f"{k} = {v}" for k, v in sorted(sysctls.items())]
    return [
        "install -d /etc/flatroute",
        "cat > /etc/sysctl.d/90-flatroute.conf <<'FLATROUTE_EOF'",
        "# flatroute lab: forwarding, SRv6, no DAD, no reverse-path filter",
        *conf,
        "FLATROUTE_EOF",
        "cat > /usr/local/sbin/flatroute-links <<'FLATROUTE_EOF'",
        *_links_body(vm),
        "FLATROUTE_EOF",
        "chmod 0755 /usr/local/sbin/flatroute-links",
        "cat > /etc/systemd/system/flatroute-links.service <<'FLATROUTE_EOF'",
        "[Unit]",
        "Description=flatroute lab: fabric NIC names and addresses",
        "After=systemd-udevd.service systemd-sysctl.service",
        "Before=network-online.target",
        "",
        "[Service]",
        "Type=oneshot",
        "RemainAfterExit=yes",
        "ExecStart=/usr/local/sbin/flatroute-links",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "FLATROUTE_EOF",
        "systemctl daemon-reload",
        "systemctl enable flatroute-links.service",
        "systemctl restart flatroute-links.service",
    ]


def _links_body(vm: Machine) -> list[str]:
    """The flatroute-links script: each NIC found by MAC and renamed, then its addresses."""
    body = [
        "#!/bin/sh",
        f"# flatroute lab: the fabric NICs of {_comment(vm.name)}: renamed by MAC to the naming",
        "# rule, addresses from the plan. Run at every boot by flatroute-links.service.",
        "set -eu",
        "sysctl -q -p /etc/sysctl.d/90-flatroute.conf >/dev/null ||"
        " echo 'flatroute-links: some sysctls could not be set' >&2",
        "nic() {",
        '  mac=$1 name=$2 tries=0 cur=""',
        '  while [ -z "$cur" ]; do',
        "    for d in /sys/class/net/*; do",
        '      if [ "$(cat "$d/address")" = "$mac" ]; then cur=${d##*/}; fi',
        "    done",
        '    if [ -z "$cur" ]; then',
        "      tries=$((tries + 1))",
        '      if [ "$tries" -gt 60 ]; then echo "flatroute-links: no NIC with MAC $mac" >&2;'
        " exit 1; fi",
        "      sleep 0.5",
        "    fi",
        "  done",
        '  if [ "$cur" != "$name" ]; then',
        '    ip link set dev "$cur" down',
        '    ip link set dev "$cur" name "$name"',
        "  fi",
        '  echo 0 > "/proc/sys/net/ipv6/conf/$name/accept_dad"',
        '  echo 1 > "/proc/sys/net/ipv6/conf/$name/seg6_enabled"',
        '  ip link set dev "$name" up',
        "}",
    ]
    for n in vm.nics:
        body.append(f"nic {q(n.mac)} {q(n.ifname)}  # toward {_comment(n.peer)}")
    for n in vm.nics:
        for a in n.addresses:
            if ":" in a:
                IPv6Interface(a)
                body.append(f"ip -6 addr replace {q(a)} dev {q(n.ifname)} nodad")
            else:
                IPv4Interface(a)
                body.append(f"ip -4 addr replace {q(a)} dev {q(n.ifname)}")
    return body


def _script_head(fabric: Fabric, vm: Machine, what: str) -> list[str]:
    return [
        "#!/bin/sh",
        *_header(fabric, "#"),
        f"# VM {_comment(vm.name)} ({what}); run by `vagrant up` / `vagrant provision` as root.",
        f"# Its rendered files were uploaded to {UPLOAD_DIR}/ first. Idempotent.",
        "set -eu",
        "export DEBIAN_FRONTEND=noninteractive",
        f"F={UPLOAD_DIR}",
        "",
    ]


def router_script(fabric: Fabric, vm: Machine, frr_conf: str) -> str:
    what = ROLE_NAMES[vm.role]
    daemons = daemons_for(frr_conf)
    out = _script_head(fabric, vm, f"{what}, FRR")
    out += ["echo '>>> packages: frr'",
            "apt-get update -q",
            "apt-get install -y -q frr iproute2",
            "",
            "echo '>>> fabric NICs, forwarding, SRv6'"]
    out += _links_script(vm, ROUTER_SYSCTLS)
    out += ["", "echo " + q(">>> FRR: " + ", ".join(daemons) + " with the rendered frr.conf")]
    for d in daemons:
        if d != "zebra":
            out.append(f"sed -i 's/^{d}=no/{d}=yes/' /etc/frr/daemons")
    out += [
        "install -d /etc/systemd/system/frr.service.d",
        "cat > /etc/systemd/system/frr.service.d/flatroute.conf <<'FLATROUTE_EOF'",
        "[Unit]",
        "Requires=flatroute-links.service",
        "After=flatroute-links.service",
        "FLATROUTE_EOF",
        'install -o frr -g frr -m 0640 "$F/frr.conf" /etc/frr/frr.conf',
        "systemctl daemon-reload",
        "systemctl enable frr.service",
        "systemctl restart frr.service",
    ]
    if any(f.endswith("srv6.sh") for f in vm.files):
        out += [
            "",
            "echo '>>> SRv6 End SID (the rendered srv6.sh companion), now and at every boot'",
            'install -m 0755 "$F/srv6.sh" /etc/flatroute/srv6.sh',
            "cat > /etc/systemd/system/flatroute-srv6.service <<'FLATROUTE_EOF'",
            "[Unit]",
            "Description=flatroute lab: SRv6 End SID of this router",
            "Requires=flatroute-links.service",
            "After=flatroute-links.service",
            "",
            "[Service]",
            "Type=oneshot",
            "RemainAfterExit=yes",
            "ExecStart=/bin/sh /etc/flatroute/srv6.sh",
            "",
            "[Install]",
            "WantedBy=multi-user.target",
            "FLATROUTE_EOF",
            "systemctl daemon-reload",
            "systemctl enable flatroute-srv6.service",
            "systemctl restart flatroute-srv6.service",
        ]
    out += ["", "echo " + q(f">>> {vm.name} ready: vtysh -c 'show bgp summary'")]
    return "\n".join(out) + "\n"


def node_script(fabric: Fabric, vm: Machine) -> str:
    name = q(vm.name)
    out = _script_head(fabric, vm, "node: speaker and CNI plugin")
    out += ["echo '>>> packages: python3-pip, python3-venv'",
            "apt-get update -q",
            "apt-get install -y -q python3-pip python3-venv iproute2",
            "",
            "echo '>>> fabric NICs, forwarding, SRv6'"]
    out += _links_script(vm, NODE_SYSCTLS)
    out += [
        "",
        "echo '>>> flatroute from the synced source tree (/vagrant)'",
        f"if [ ! -x {VENV}/bin/python ]; then python3 -m venv {VENV}; fi",
        f"{VENV}/bin/pip install -q --upgrade /vagrant",
        f"ln -sf {VENV}/bin/flatroute /usr/local/bin/flatroute",
        f"ln -sf {VENV}/bin/flatroute-cni /usr/local/bin/flatroute-cni",
        "",
        "echo '>>> node state (what the controller publishes for this node)'",
        f'install -m 0644 "$F/nodestate.json" {NODE_STATE}',
        f"install -d {STATE_DIR}/nodes",
        f"ln -sf {NODE_STATE} {STATE_DIR}/nodes/{name}.json",
    ]
    if fabric.bgp.md5 is not None:
        out.append(f'install -m 0600 "$F/bgp-md5.secret" {MD5_FILE}')
    out += _speaker_service(vm)
    out += [
        "",
        "echo '>>> CNI plugin: /opt/cni/bin/flatroute-cni, /etc/cni/net.d/10-flatroute.conflist'",
        "if flatroute cni install --help >/dev/null 2>&1; then",
        f"  flatroute cni install --node-file {NODE_FILE}",
        "else",
        f"  {VENV}/bin/python -m cni.install install --node-file {NODE_FILE}",
        "fi",
        "",
        "echo " + q(f">>> {vm.name} ready: systemctl status flatroute-speaker"),
    ]
    return "\n".join(out) + "\n"


def _speaker_service(vm: Machine) -> list[str]:
    """flatroute-speaker.service, with the flags the installed speaker has."""
    name = q(vm.name)
    return [
        "",
        "echo '>>> speaker: flatroute-speaker.service'",
        "# The speaker's flags are read from its --help: the static-mode state directory",
        "# (nodes/<node>.json in, status/<node>.json out) as `flatroute lab` uses it, and",
        "# --node-state, --run-dir and --node-file when the speaker has them.",
        "help=$(flatroute speaker run --help 2>/dev/null || true)",
        'if [ -z "$help" ]; then',
        "  echo 'WARNING: this flatroute has no `speaker run` command: the speaker is not"
        " started' >&2",
        "else",
        f"  args=\"--node {name} --state-dir {STATE_DIR}\"",
        f'  case "$help" in *--node-state*) args="$args --node-state {NODE_STATE}" ;; esac',
        f'  case "$help" in *--run-dir*) args="$args --run-dir {RUN_DIR}" ;; esac',
        f'  case "$help" in *--node-file*) args="$args --node-file {NODE_FILE}" ;; esac',
        "  cat > /etc/systemd/system/flatroute-speaker.service <<FLATROUTE_EOF",
        "[Unit]",
        f"Description=flatroute speaker for node {_comment(vm.name)}",
        "Requires=flatroute-links.service",
        "After=flatroute-links.service network-online.target",
        "",
        "[Service]",
        f"Environment=PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
        "/sbin:/bin",
        f"ExecStart={VENV}/bin/flatroute speaker run $args",
        "RuntimeDirectory=flatroute flatroute/speaker",
        "RuntimeDirectoryPreserve=yes",
        "Restart=always",
        "RestartSec=2",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "FLATROUTE_EOF",
        "  systemctl daemon-reload",
        "  systemctl enable flatroute-speaker.service",
        "  systemctl restart flatroute-speaker.service",
        "fi",
    ]


# -- README -----------------------------------------------------------------------------------
def readme(fabric: Fabric, plan: Plan, vms: list[Machine]) -> str:
    name = fabric.name
    out = [
        f"# flatroute lab as VMs: fabric `{_comment(name)}`",
        "",
        f"Generated by `flatroute render --platform vagrant` (flatroute {__version__}) from "
        f"`{_comment(PurePath(fabric.source).name)}`; do not edit by hand: change the fabric "
        "and re-render. "
        "See `vagrant/README.md` in the flatroute repository for how to run and regenerate it.",
        "",
        f"{len(vms)} VMs (`{BOX}`): "
        f"{sum(v.role is not Role.NODE for v in vms)} routers running FRR with the configs of "
        "`flatroute render --platform frr`, "
        f"{sum(v.role is Role.NODE for v in vms)} nodes running the flatroute speaker and the "
        "CNI plugin.",
        "",
        "| VM | role | NIC | toward | addresses |",
        "|---|---|---|---|---|",
    ]
    for vm in vms:
        for i, n in enumerate(vm.nics):
            first = f"`{vm.name}` | {vm.role}" if i == 0 else " | "
            out.append(f"| {first} | `{n.ifname}` ({n.mac}) | {_comment(n.peer)} | "
                       f"{', '.join(n.addresses) or 'IPv6 link-local'} |")
        if not vm.nics:
            out.append(f"| `{vm.name}` | {vm.role} | - | - | - |")
    nets: dict[str, list[str]] = {}
    for vm in vms:
        for n in vm.nics:
            nets.setdefault(n.network, []).append(vm.name)
    out += ["", "Networks (VirtualBox internal networks / isolated libvirt networks):", ""]
    out += [f"- `{net}`: {', '.join(members)}" for net, members in nets.items()]
    nodes = list(plan.nodes)
    if nodes:
        out += ["", "| node | ASN | pod blocks | locator |", "|---|---|---|---|"]
        for np in nodes:
            blocks = " ".join(str(b) for b in (*np.ipv4_blocks, *np.ipv6_blocks))
            out.append(f"| `{np.name}` | {np.asn} | {blocks} | {np.locator or '-'} |")
    big = [v.name for v in vms if len(v.nics) > VIRTUALBOX_MAX_NICS]
    if big:
        out += ["", f"VirtualBox offers {VIRTUALBOX_MAX_NICS} adapters besides the management "
                f"one; these VMs need more and run only under libvirt: {', '.join(big)}."]
    if fabric.bgp.md5 is not None:
        out += ["", f"The fabric asks for TCP MD5: the lab uses a fixed lab-only secret "
                f"(`configs/*/bgp-md5.secret`, {MD5_FILE} on the VMs), never a real one."]
    return "\n".join(out) + "\n"


__all__ = ["Machine", "Nic", "machines", "render_vagrant", "ruby_str"]
