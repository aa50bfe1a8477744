"""`flatroute speaker run --kubernetes`: the same agent, fed from this node's NodeState.

The agent itself is mode-agnostic: it reads a NodeState document from a file and writes its
status document. In Kubernetes mode a bridge thread keeps that file equal to the NodeState
custom resource's spec (written atomically, only on change; a missing or invalid spec leaves
the last good file in place, so nothing is half-applied) and reports the agent's status
document on the resource's status subresource, only when it changed.
"""

from __future__ import annotations

import argparse
import os
import threading
from collections.abc import Callable

from flatroute import nodestate, speaker_status, tombstone
from flatroute.files import write_atomic
from flatroute.logging import get_logger
from flatroute.nodestate import NodeState
from flatroute.tombstone import Removed
from kube.objects import NodeStatus, SessionStatus
from speaker.kube_source import Desired, open_source, run


def add_arguments(run_parser: argparse.ArgumentParser) -> None:
    run_parser.add_argument("--kubernetes", action="store_true",
                            help="desired state from this node's NodeState custom resource; "
                            "status goes back on its status subresource")
    run_parser.add_argument("--kubeconfig", help="kubeconfig (default: in-cluster config)")
    run_parser.add_argument("--server", help="API server URL without auth (tests' fake)")


class Bridge:
    def __init__(self, node: str, state_file: str, status_file: str,
                 on_change: Callable[[], None] | None = None) -> None:
        self.node = node
        self.state_file = state_file
        self.status_file = status_file
        #: wakes the agent's loop when a new node state was written (it need not wait a pass)
        self.on_change = on_change
        self.log = get_logger(component="speaker", node=node, mode="kubernetes")

    def apply(self, desired: Desired) -> NodeStatus:
        """Hand the desired state to the agent; report what the agent last reported."""
        error = desired.error
        wanted: str | None = None
        text = ""
        if isinstance(desired.state, Removed):  # the node's tombstone: the agent withdraws
            text = tombstone.to_json(desired.state)
            wanted = tombstone.generation(desired.state)
        elif desired.state is not None:
            text = nodestate.to_json(desired.state)
            wanted = nodestate.spec_hash(nodestate.spec_doc(desired.state))
        if wanted is not None and write_atomic(self.state_file, text):
            self.log.info("node_state_received", generation=wanted)
            if self.on_change is not None:
                self.on_change()
        try:
            st = speaker_status.read(self.status_file)
        except speaker_status.StatusError as exc:
            return NodeStatus(applied=False, spec_hash=desired.spec_hash,
                              generation=desired.generation,
                              last_error=error or f"speaker has not reported yet: {exc}")
        sessions = tuple(SessionStatus(s.name, "Established" if s.state == "established"
                                       else s.state.capitalize(), s.peer, None,
                                       s.prefixesReceived, s.lastError) for s in st.sessions)
        applied = wanted is not None and st.generation == wanted
        return NodeStatus(
            applied=applied, spec_hash=desired.spec_hash if applied else None,
            generation=desired.generation if applied else None, sessions=sessions,
            announced=st.announced, learned_routes=st.installed.get("routes", 0),
            encap_routes=st.installed.get("encap", 0),
            sids=tuple(str(s.sid) for s in desired.state.local_sids)
            if applied and isinstance(desired.state, NodeState) else (),
            # the resource lists feature names ("vrf"); the speaker's sentence says why
            missing_features=tuple(f.split(":", 1)[0].strip()[:64]
                                   for f in st.missing_kernel_features),
            last_error=error or st.last_error, datapath=st.datapath, services=st.services,
            capabilities=tuple((str(c.get("name")), bool(c.get("ok")),
                                str(c.get("reason") or "")[:1024])
                               for c in st.capabilities.get("checks") or ()
                               if isinstance(c, dict)))


def start(args: argparse.Namespace, status_file: str,
          on_change: Callable[[], None] | None = None) -> tuple[threading.Event, str]:
    """Start the bridge thread; return its stop event and the node-state file for the agent.
    `on_change` is called whenever a new node state was written for the agent."""
    state_file = os.path.join(args.run_dir, "nodestate.json")
    source, writer = open_source(args)
    bridge = Bridge(args.node, state_file, status_file, on_change)
    stop = threading.Event()

    def loop() -> None:
        try:
            run(source, writer, bridge.apply, stop, interval=max(args.interval, 1.0))
        finally:
            source.stop()

    threading.Thread(target=loop, name="kube-bridge", daemon=True).start()
    return stop, state_file
