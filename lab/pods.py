"""Pods in the lab: a namespace each, attached by exec'ing the real `flatroute-cni` exactly as
a container runtime does (CNI_* environment, network config on stdin, netns path)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from flatroute.errors import FlatrouteError
from lab import host
from lab.state import PodRecord
from lab.topology import Pod, Topology

IFNAME = "eth0"
#: a pod's IPv6 address is usable at once (no duplicate address detection wait)
POD_SYSCTLS = {"net.ipv6.conf.default.accept_dad": "0", "net.ipv6.conf.all.accept_dad": "0"}


class PodError(FlatrouteError):
    """The CNI plugin refused or failed a pod."""


def install_plugin(lab_dir: Path) -> Path:
    """Install the plugin into the lab with `flatroute cni install`, as a node would get it."""
    from cni import install

    bin_dir = lab_dir / "cni" / "bin"
    code = install.main(["install", "--bin-dir", str(bin_dir), "--conf-dir",
                         str(lab_dir / "cni" / "net.d")])
    plugin = bin_dir / "flatroute-cni"
    if code != 0 or not plugin.exists():
        raise PodError(f"flatroute cni install into {bin_dir} failed")
    return plugin


def plugin_path(lab_dir: Path) -> str:
    installed = lab_dir / "cni" / "bin" / "flatroute-cni"
    if installed.exists():
        return str(installed)
    found = shutil.which("flatroute-cni")
    if found is None:
        raise PodError("flatroute-cni is not installed")
    return found


def socket_path(node_dir: Path) -> Path:
    """The node's `flatroute cni serve` socket (started by `lab up` in the node namespace)."""
    return node_dir / "cni.sock"


def delete_queue(node_dir: Path) -> Path:
    """The node's own deletion queue: never the machine's, which another node's service (or
    the machine's own) would run in the wrong namespace."""
    return node_dir / "cni-delete-queue"


def cni_conf(node_dir: Path) -> dict[str, Any]:
    return {"cniVersion": "1.1.0", "name": "flatroute", "type": "flatroute-cni",
            "nodeFile": str(node_dir / "node.json"), "dataDir": str(node_dir / "ipam")}


def cni_exec(command: str, pod: Pod, node_ns: str, node_dir: Path,
             *, netns: bool = True) -> dict[str, Any]:
    plugin = plugin_path(node_dir.parent.parent)
    env = [f"CNI_COMMAND={command}", f"CNI_CONTAINERID={pod.container_id}",
           f"CNI_IFNAME={IFNAME}", f"CNI_PATH={Path(plugin).parent}:/usr/lib/cni",
           # this node's service (lab up starts it); with none there the client says try again
           f"FLATROUTE_CNI_SOCKET={socket_path(node_dir)}",
           f"FLATROUTE_CNI_DELETE_QUEUE={delete_queue(node_dir)}"]
    if netns:
        env.append(f"CNI_NETNS=/var/run/netns/{pod.ns}")
    proc = host.run(host.in_ns(node_ns, ["env", *env, plugin]),
                    input=json.dumps(cni_conf(node_dir)), check=False, timeout=30)
    out = proc.stdout.strip()
    if proc.returncode != 0:
        try:
            err = json.loads(out)
            raise PodError(f"CNI {command} {pod.name}: code {err.get('code')}: {err.get('msg')}"
                           f"{': ' + err['details'] if err.get('details') else ''}")
        except ValueError:
            raise PodError(f"CNI {command} {pod.name}: {out or proc.stderr.strip()}") from None
    result: dict[str, Any] = json.loads(out) if out else {}
    return result


def add(pod: Pod, topo: Topology, lab_dir: Path) -> PodRecord:
    node_ns = next(n.ns for n in topo.nodes if n.name == pod.node)
    host.netns_add([pod.ns])
    host.sysctl(pod.ns, POD_SYSCTLS)
    host.ip_batch(pod.ns, ["link set lo up"])
    result = cni_exec("ADD", pod, node_ns, lab_dir / "nodes" / pod.node)
    record = PodRecord(pod.name, pod.node, pod.ns, pod.container_id)
    for ip in result.get("ips", []):
        address = str(ip.get("address", "")).split("/")[0]
        if ":" in address:
            record.ipv6 = address
        elif address:
            record.ipv4 = address
    return record


def delete(record: PodRecord, topo_node_ns: str, lab_dir: Path) -> None:
    pod = Pod(record.name, record.node, record.ns, record.container_id)
    cni_exec("DEL", pod, topo_node_ns, lab_dir / "nodes" / record.node, netns=False)
