"""The lab's record of what it made, written before each thing is made, so `lab down` can
remove exactly that, even after a crashed `lab up`."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flatroute.errors import FlatrouteError
from flatroute.files import write_atomic

DEFAULT_ROOT = Path(os.environ.get("FLATROUTE_LAB_ROOT", "/run/flatroute/lab"))
DEFAULT_PREFIX = "fl"


class LabError(FlatrouteError):
    """The lab could not be built or used."""


@dataclass
class Proc:
    name: str
    pid: int
    ns: str | None
    log: str


@dataclass
class PodRecord:
    name: str
    node: str
    ns: str
    container_id: str
    ipv4: str | None = None
    ipv6: str | None = None


@dataclass
class LabState:
    prefix: str
    directory: str
    fabric_source: str = ""
    fabric_copy: str = ""
    phase: str = "building"
    namespaces: list[str] = field(default_factory=list)
    processes: list[Proc] = field(default_factory=list)
    pods: list[PodRecord] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    up_seconds: float = 0.0
    pods_per_node: int = 2
    kubernetes: bool = False
    api_url: str = ""
    #: the lab's own bpffs (pins of every node's and router's eBPF SRv6 datapath), once mounted
    bpffs: str = ""
    #: the SRv6 datapath of the routers with an End SID (kernel | bpf), per router
    router_datapaths: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return Path(self.directory) / "lab.json"

    def save(self) -> None:
        write_atomic(str(self.path), json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    @property
    def dir(self) -> Path:
        return Path(self.directory)


def lab_dir(prefix: str, root: Path = DEFAULT_ROOT) -> Path:
    return root / prefix


def load(prefix: str, root: Path = DEFAULT_ROOT) -> LabState | None:
    path = lab_dir(prefix, root) / "lab.json"
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return LabState(prefix, str(lab_dir(prefix, root)), phase="corrupt")
    doc["processes"] = [Proc(**p) for p in doc.get("processes", [])]
    doc["pods"] = [PodRecord(**p) for p in doc.get("pods", [])]
    known = set(LabState.__dataclass_fields__)
    return LabState(**{k: v for k, v in doc.items() if k in known})
