"""What the speaker is asked to do: its options, and the node state read and checked in one go.

`load()` is all or nothing: a node state that does not parse, is for another node, fails the
speaker's checks or names an unreadable MD5 file raises InvalidInput, and nothing of it is used.
A missing one too: only a tombstone (`flatroute.tombstone`) says the node was removed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from flatroute import nodestate, tombstone
from flatroute.errors import InvalidInput, field_error
from flatroute.nodestate import NodeState
from flatroute.tombstone import Removed
from speaker import announce

DEFAULT_CONFIG_DIR = "/etc/flatroute"
DEFAULT_RUN_DIR = "/run/flatroute"
DEFAULT_STATE_DIR = "/var/lib/flatroute"
#: where the eBPF SRv6 datapath pins its programs and maps (inside a bpffs)
DEFAULT_BPF_DIR = "/sys/fs/bpf/flatroute"



@dataclass(frozen=True, slots=True)
class Options:
    node: str
    state_dir: str = DEFAULT_STATE_DIR
    run_dir: str = DEFAULT_RUN_DIR
    config_dir: str = DEFAULT_CONFIG_DIR
    node_state_file: str | None = None
    node_file: str | None = None
    status_file: str | None = None
    metrics_port: int | None = None
    metrics_addr: str = ""
    interval: float = 5.0
    #: longest time learned paths of a (re)starting peer are held; default: 2x hold time
    restart_hold: float | None = None
    exabgp_command: tuple[str, ...] | None = None
    bpf_dir: str = DEFAULT_BPF_DIR

    @property
    def node_state_path(self) -> str:
        return self.node_state_file or os.path.join(self.state_dir, "nodes", f"{self.node}.json")

    @property
    def status_path(self) -> str:
        return self.status_file or os.path.join(self.state_dir, "status", f"{self.node}.json")

    @property
    def node_file_path(self) -> str:
        return self.node_file or os.path.join(self.run_dir, "node.json")

    @property
    def drain_flag(self) -> str:
        return os.path.join(self.run_dir, "drain")

    @property
    def pid_file(self) -> str:
        return os.path.join(self.run_dir, "speaker.pid")


def read_md5(state: NodeState, config_dir: str, source: str) -> str | None:
    ref = state.bgp.md5
    if ref is None or not ref.file:
        if ref is not None:
            raise InvalidInput([field_error(source, "spec.bgp.md5.kubernetesSecret",
                                            "Kubernetes secrets need Kubernetes mode; "
                                            "static mode takes bgp.md5.file")])
        return None
    path = os.path.join(config_dir, ref.file)  # absolute paths stay as they are
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip()
    except OSError as exc:
        raise InvalidInput([field_error(source, "spec.bgp.md5.file",
                                        f"cannot read the MD5 password file: {exc.strerror}",
                                        path)]) from exc


@dataclass(slots=True)
class Desired:
    state: NodeState
    generation: str
    md5: str | None
    #: kernel | bpf, chosen from state.srv6_datapath and the capability probe (None: no SRv6)
    datapath: str | None = None


def load(opts: Options) -> Desired | Removed:
    """Read and validate the node state (and its MD5 secret): all or nothing. A tombstone
    (the node was removed from the fabric) is returned as `Removed`; a missing document is
    InvalidInput (not published yet, or lost: never a removal)."""
    path = opts.node_state_path
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError as exc:
        raise InvalidInput([field_error(path, "", "no node state (has the controller "
                                        "published it?)")]) from exc
    except OSError as exc:
        raise InvalidInput([field_error(path, "", f"cannot read: {exc.strerror}")]) from exc
    state = tombstone.from_json(text, path)
    if state.node != opts.node:
        raise InvalidInput([field_error(path, "spec.node", f"is for another node, not "
                                        f"{opts.node}", state.node)])
    if isinstance(state, Removed):
        return state
    announce.validate(state, path)
    try:
        gen = str(json.loads(text).get("generation") or "")
    except ValueError:
        gen = ""
    md5 = read_md5(state, opts.config_dir, path)
    return Desired(state, gen or nodestate.spec_hash(nodestate.spec_doc(state)), md5)
