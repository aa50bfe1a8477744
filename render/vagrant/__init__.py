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

The package: `machines` (the VMs and their NICs), `vagrantfile`, `provision` (the
scripts), `readme` and `text` (escaping); `render_vagrant` here puts them together.
"""

from __future__ import annotations

import dataclasses

from flatroute.errors import FieldError, InvalidInput
from flatroute.fabric.model import Fabric, SecretRef
from flatroute.fabric.wiring import Role
from flatroute.nodestate import from_plan, to_json
from flatroute.plan.model import Plan
from render import render
from render.common import RenderedFile
from render.vagrant.machines import Machine, Nic, lab_secret, machines, without_ports
from render.vagrant.provision import MD5_FILE, node_script, router_script
from render.vagrant.readme import readme
from render.vagrant.text import ruby_str
from render.vagrant.vagrantfile import vagrantfile

NAME = "vagrant"


def render_vagrant(fabric: Fabric, plan: Plan) -> list[RenderedFile]:
    """Every file of the Vagrant lab; InvalidInput when the fabric cannot be planned."""
    if plan.problems:
        raise InvalidInput([FieldError(fabric.source, "spec.nodes", f"cannot plan: {x}")
                            for x in plan.problems])
    lab_fabric = without_ports(fabric)
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
                    state.bgp, md5=SecretRef(file=MD5_FILE)))
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


__all__ = ["MD5_FILE", "Machine", "Nic", "lab_secret", "machines", "render_vagrant", "ruby_str"]
