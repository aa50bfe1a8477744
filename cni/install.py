"""`flatroute cni install|uninstall|serve`: put the plugin in the runtime's CNI directories.

`flatroute-cni` is the C client (cni/client/flatroute-cni.c, compiled here with `cc -O2`),
which hands each request to `flatroute cni serve` and, with no service listening, execs
`flatroute-cni-py` next to it. Without a working C compiler `flatroute-cni` is that launcher
itself, as before the client existed (with a note saying so).

The launcher is three lines, not pip's console script: pip's wrapper runs with site-packages
(and imports `re`), which costs more than the whole ADD budget. It runs the interpreter with
`-IS` (isolated, no site) and puts the package directory on sys.path itself.

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

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

BINARY = "flatroute-cni"
PY_BINARY = "flatroute-cni-py"  # the launcher, the client's fallback
CONFLIST = "10-flatroute.conflist"
MARKER = "# flatroute-cni launcher"
CLIENT_MARKER = "flatroute-cni client"  # a string in the compiled client
CLIENT_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "client",
                             "flatroute-cni.c")
DEFAULT_SOCKET = "/run/flatroute/cni.sock"  # as cni.serve.DEFAULT_SOCKET
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


def c_compiler() -> str | None:
    import shutil

    for name in (os.environ.get("CC"), "cc", "gcc"):
        if name and (found := shutil.which(name)):
            return found
    return None


def _c_string(text: str) -> str:
    """A C string literal for a -D flag: printable ASCII as is, every other byte in octal."""
    out = [chr(b) if 32 <= b < 127 and chr(b) not in '"\\' else f"\\{b:03o}"
           for b in text.encode()]
    return '"' + "".join(out) + '"'


_BUILT: dict[tuple[str, bytes, str], bytes] = {}  # one compile per process (tests install often)


def build_client(cc: str, socket_path: str = DEFAULT_SOCKET) -> bytes:
    """The C client's executable, built with `cc -O2`; CalledProcessError if it does not build."""
    import subprocess

    with open(CLIENT_SOURCE, "rb") as fh:
        source = fh.read()
    key = (cc, source, socket_path)
    if key not in _BUILT:
        with tempfile.TemporaryDirectory(prefix="flatroute-cni-") as tmp:
            out = os.path.join(tmp, BINARY)
            subprocess.run([cc, "-std=c99", "-O2", "-Wall", "-Wextra",
                            f"-DFLATROUTE_CNI_SOCKET={_c_string(socket_path)}", "-o", out,
                            CLIENT_SOURCE], check=True, capture_output=True, text=True,
                           timeout=120)
            with open(out, "rb") as fh:
                _BUILT[key] = fh.read()
    return _BUILT[key]


def _write_atomic(path: str, text: str | bytes, mode: int) -> None:
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".flatroute-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode() if isinstance(text, str) else text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def install(bin_dir: str, conf_dir: str, python: str | None = None, *, client: bool = True,
            socket_path: str = DEFAULT_SOCKET, note: Callable[[str], object] | None = None,
            **conf: object) -> list[str]:
    """Write flatroute-cni (the C client, or the launcher without a compiler or with
    client=False), flatroute-cni-py (the launcher) and the conflist; return their paths."""
    python = python or default_python()
    binary = os.path.join(bin_dir, BINARY)
    py_binary = os.path.join(bin_dir, PY_BINARY)
    conf_path = os.path.join(conf_dir, CONFLIST)
    text = launcher(python)
    _write_atomic(py_binary, text, 0o755)
    built: bytes | None = None
    if client:
        import subprocess

        cc = c_compiler()
        why = "no C compiler (cc) found"
        if cc:
            try:
                built = build_client(cc, socket_path)
            except (OSError, subprocess.SubprocessError) as exc:
                detail = getattr(exc, "stderr", "") or str(exc)
                why = f"{cc} could not build it: {detail.strip().splitlines()[-1:]}"
        if built is None and note is not None:
            note(f"note: {BINARY} is the Python plugin (~25 ms per call): the fast C client "
                 f"(~2 ms with `flatroute cni serve`) needs gcc and libc6-dev; {why}")
    _write_atomic(binary, built if built is not None else text, 0o755)
    _write_atomic(conf_path, json.dumps(conflist(**conf), indent=2) + "\n",  # type: ignore[arg-type]
                  0o644)
    return [binary, py_binary, conf_path]


def _ours(path: str, *markers: str) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 20)  # the client's marker sits in its .rodata
    except OSError:
        return False
    return any(m.encode() in head for m in markers)


def uninstall(bin_dir: str, conf_dir: str) -> list[str]:
    """Remove what install wrote; leave files that are not ours alone."""
    removed = []
    for path, markers in ((os.path.join(bin_dir, BINARY), (MARKER, CLIENT_MARKER)),
                          (os.path.join(bin_dir, PY_BINARY), (MARKER,)),
                          (os.path.join(conf_dir, CONFLIST), (f'"type": "{BINARY}"',))):
        if _ours(path, *markers):
            os.unlink(path)
            removed.append(path)
    return removed


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from cni import serve

    sub = parser.add_subparsers(dest="cni_command", required=True)
    serve.configure_parser(sub.add_parser(
        "serve", help="the resident service the C client hands requests to (run as root, in "
        "the namespace plugins run in)"))
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
            p.add_argument("--no-client", dest="client", action="store_false",
                           help="install the Python plugin as flatroute-cni, not the C client")
            p.add_argument("--socket", default=DEFAULT_SOCKET,
                           help="the service socket compiled into the client (default "
                           f"{DEFAULT_SOCKET}; FLATROUTE_CNI_SOCKET overrides it at run time)")
    return parser


def build_parser(prog: str = "flatroute cni") -> argparse.ArgumentParser:
    return configure_parser(argparse.ArgumentParser(prog=prog,
                                                    description="install the CNI plugin"))


def run(args: argparse.Namespace) -> int:
    if args.cni_command == "serve":
        from cni import serve

        return serve.run(args)
    try:
        if args.cni_command == "install":
            paths = install(args.bin_dir, args.conf_dir, args.python, client=args.client,
                            socket_path=args.socket,
                            note=lambda text: print(text, file=sys.stderr), name=args.name,
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
