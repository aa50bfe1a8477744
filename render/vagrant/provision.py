"""The provisioning scripts, `provision/<vm>.sh`: the fabric NICs renamed by MAC and
addressed at every boot, then FRR on a router, or flatroute's speaker and CNI plugin on a node."""

from __future__ import annotations

import shlex
from ipaddress import IPv4Interface, IPv6Interface

from flatroute.fabric.hosts import NODE_SYSCTLS, ROUTER_SYSCTLS
from flatroute.fabric.model import Fabric
from render.common import ROLE_NAMES
from render.frr import daemons_for
from render.vagrant.machines import UPLOAD_DIR, Machine
from render.vagrant.text import comment, header

#: the node state the speaker reads, and the static-mode layout the lab's speaker reads
NODE_STATE = "/etc/flatroute/nodestate.json"
STATE_DIR = "/var/lib/flatroute/state"
NODE_FILE = "/run/flatroute/node.json"
RUN_DIR = "/run/flatroute/speaker"
VENV = "/opt/flatroute"
#: the MD5 secret on nodes and ToRs when the fabric asks for MD5 (a lab-only secret)
MD5_FILE = "/etc/flatroute/bgp-md5.secret"

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
        f"# flatroute lab: the fabric NICs of {comment(vm.name)}: renamed by MAC to the naming",
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
        body.append(f"nic {q(n.mac)} {q(n.ifname)}  # toward {comment(n.peer)}")
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
        *header(fabric, "#"),
        f"# VM {comment(vm.name)} ({what}); run by `vagrant up` / `vagrant provision` as root.",
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
        f"Description=flatroute speaker for node {comment(vm.name)}",
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
