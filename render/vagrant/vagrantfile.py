"""The lab's Vagrantfile: the source tree lookup, the box, the MACHINES hash (every VM's
role, size, NICs and files) and the Vagrant configuration that defines a VM from each entry."""

from __future__ import annotations

from flatroute.fabric.model import Fabric
from render.vagrant.machines import UPLOAD_DIR, Machine
from render.vagrant.text import header, ruby_str

BOX = "debian/bookworm64"
RSYNC_EXCLUDE = (".git/", ".venv/", "venv/", ".mypy_cache/", ".ruff_cache/",
                 ".pytest_cache/", "__pycache__/", "*.egg-info/", "build/", "dist/",
                 ".vagrant/")


def vagrantfile(fabric: Fabric, vms: list[Machine]) -> str:
    out = _vagrantfile_head(fabric)
    out += _machines_rb(vms)
    out += _vagrant_configure()
    return "\n".join(out) + "\n"


def _vagrantfile_head(fabric: Fabric) -> list[str]:
    """The comment, the source tree lookup, the box and the rsync exclusions."""
    return ["# -*- mode: ruby -*-", "# vi: set ft=ruby :", *header(fabric, "#"), "#",
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
