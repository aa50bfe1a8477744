"""`flatroute cni install|uninstall|serve`: mounts cni.install's parser on the flatroute CLI."""

from __future__ import annotations

import argparse
from typing import Any

from cni import install


def register(sub: Any) -> None:
    p = sub.add_parser("cni", help="install or remove the flatroute CNI plugin and conflist, "
                       "or run its resident service",
                       description="Put the flatroute-cni plugin in the CNI bin dir and write "
                       "10-flatroute.conflist (cniVersion 1.1.0); uninstall removes only files "
                       "that carry flatroute's marker; serve runs the resident service the "
                       "fast C client hands requests to.")
    install.configure_parser(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    return int(install.run(args))
