"""`flatroute cni install|uninstall`: put the plugin in the runtime's CNI directories.

The installed binary is a three-line launcher, not pip's console script: pip's wrapper runs
with site-packages (and imports `re`), which costs more than the whole ADD budget. The launcher
runs the interpreter with `-IS` (isolated, no site) and puts the package directory on sys.path
itself.

Mount in the flatroute CLI with `configure_parser(subparsers.add_parser("cni"))` and call
`run(args)`; or call `main(argv)` directly (`python -m cni.install install ...`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile

BINARY = "flatroute-cni"
CONFLIST = "10-flatroute.conflist"
MARKER = "# flatroute-cni launcher"
DEFAULT_BIN_DIR = "/opt/cni/bin"
DEFAULT_CONF_DIR = "/etc/cni/net.d"


def launcher(python: str) -> str:
    import cni
    import flatroute

    roots = []
    for pkg in (cni, flatroute):
        root = os.path.dirname(os.path.dirname(os.path.abspath(pkg.__file__ or "")))
        if root not in roots:
            roots.append(root)
    lines = [f"#!{python} -IS", MARKER, "import sys"]
    lines += [f"sys.path.insert(0, {root!r})" for root in reversed(roots)]
    lines += ["from cni.main import main", "main()", ""]
    return "\n".join(lines)


def default_python() -> str:
    """The interpreter for the launcher: the distribution's python3 when it is 3.11 or newer.

    Debian's /usr/bin/python3 is statically linked with _socket and _struct built in; it starts
    ~4 ms faster than a shared-libpython build (pyenv, venvs), which is a quarter of the budget.
    The plugin needs only the standard library, so any 3.11+ interpreter will do.
    """
    system = "/usr/bin/python3"
    if sys.executable != system and os.access(system, os.X_OK):
        import subprocess

        probe = subprocess.run(
            [system, "-IS", "-c", "import sys; print(sys.version_info >= (3, 11))"],
            capture_output=True, text=True, check=False)
        if probe.stdout.strip() == "True":
            return system
    return sys.executable


def conflist(name: str = "flatroute", mtu: int | None = None, node_file: str | None = None,
             data_dir: str | None = None, portmap: bool = False) -> dict[str, object]:
    plugin: dict[str, object] = {"type": BINARY, "ipam": {}}
    if mtu is not None:
        plugin["mtu"] = mtu
    if node_file:
        plugin["nodeFile"] = node_file
    if data_dir:
        plugin["dataDir"] = data_dir
    plugins: list[dict[str, object]] = [plugin]
    if portmap:
        plugins.append({"type": "portmap", "capabilities": {"portMappings": True}})
    return {"cniVersion": "1.1.0", "name": name, "plugins": plugins}


def _write_atomic(path: str, text: str, mode: int) -> None:
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".flatroute-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def install(bin_dir: str, conf_dir: str, python: str | None = None, **conf: object,
            ) -> list[str]:
    python = python or default_python()
    binary = os.path.join(bin_dir, BINARY)
    conf_path = os.path.join(conf_dir, CONFLIST)
    _write_atomic(binary, launcher(python), 0o755)
    _write_atomic(conf_path, json.dumps(conflist(**conf), indent=2) + "\n",  # type: ignore[arg-type]
                  0o644)
    return [binary, conf_path]


def _ours(path: str, marker: str) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return marker in fh.read(4096)
    except OSError:
        return False


def uninstall(bin_dir: str, conf_dir: str) -> list[str]:
    """Remove what install wrote; leave files that are not ours alone."""
    removed = []
    for path, marker in ((os.path.join(bin_dir, BINARY), MARKER),
                         (os.path.join(conf_dir, CONFLIST), f'"type": "{BINARY}"')):
        if _ours(path, marker):
            os.unlink(path)
            removed.append(path)
    return removed


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    sub = parser.add_subparsers(dest="cni_command", required=True)
    for name, helptext in (("install", "install the plugin and write 10-flatroute.conflist"),
                           ("uninstall", "remove what install wrote")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--bin-dir", default=DEFAULT_BIN_DIR)
        p.add_argument("--conf-dir", default=DEFAULT_CONF_DIR)
        if name == "install":
            p.add_argument("--python", default=None,
                           help="interpreter for the launcher (default: /usr/bin/python3 if it "
                           "is 3.11+, else this one)")
            p.add_argument("--name", default="flatroute", help="network name")
            p.add_argument("--mtu", type=int, default=None, help="override the node file's MTU")
            p.add_argument("--node-file", default=None)
            p.add_argument("--data-dir", default=None)
            p.add_argument("--portmap", action="store_true",
                           help="chain the reference portmap plugin after flatroute-cni")
    return parser


def build_parser(prog: str = "flatroute cni") -> argparse.ArgumentParser:
    return configure_parser(argparse.ArgumentParser(prog=prog,
                                                    description="install the CNI plugin"))


def run(args: argparse.Namespace) -> int:
    try:
        if args.cni_command == "install":
            paths = install(args.bin_dir, args.conf_dir, args.python, name=args.name,
                            mtu=args.mtu, node_file=args.node_file, data_dir=args.data_dir,
                            portmap=args.portmap)
            for path in paths:
                print(f"wrote {path}")
        else:
            for path in uninstall(args.bin_dir, args.conf_dir):
                print(f"removed {path}")
    except OSError as exc:
        print(f"flatroute cni {args.cni_command}: {exc.filename}: {exc.strerror}",
              file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
