"""`flatroute cni install|uninstall|serve`: put the plugin in the runtime's CNI directories.

`flatroute-cni` is the C client (cni/client/flatroute-cni.c), statically linked here with
`cc -static -O2` (or copied from `--client-binary`, built by `flatroute cni build-client`), which
hands each request to `flatroute cni serve` and needs nothing from the host: no Python, no
shared library. With no service listening it answers itself (docs/cni.md: ADD and CHECK 11,
STATUS 50, DEL queued for the service). `flatroute-cni-py`, the Python plugin, is a developer
and lab tool (`--no-python-plugin` leaves it out). Without a working C compiler `flatroute-cni`
is that launcher itself, as before the client existed (with a note saying so).

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
PY_BINARY = "flatroute-cni-py"  # the launcher: the Python plugin (developer and lab tool)
CONFLIST = "10-flatroute.conflist"
MARKER = "# flatroute-cni launcher"
CLIENT_MARKER = "flatroute-cni client"  # a string in the compiled client
CLIENT_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "client",
                             "flatroute-cni.c")
DEFAULT_SOCKET = "/run/flatroute/cni.sock"  # as cni.serve.DEFAULT_SOCKET
DEFAULT_DELETE_QUEUE = "/var/lib/cni/flatroute-delete-queue"  # as cni.delqueue.DEFAULT_DIR
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
             data_dir: str | None = None, portmap: bool = False,
             cni_version: str = "1.1.0") -> dict[str, object]:
    """The conflist. 1.1.0 brings STATUS and GC (containerd 2, CRI-O 1.30); containerd 1.6 and
    1.7 (libcni 1.1) reject a 1.1.0 result, and Debian's reference plugins stop at 1.0.0, so a
    chain with them, or a node with such a runtime, needs cni_version "1.0.0"."""
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
    return {"cniVersion": cni_version, "name": name, "plugins": plugins}


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


_BUILT: dict[tuple[str, bytes, str, str], bytes] = {}  # one compile per process


def build_client(cc: str, socket_path: str = DEFAULT_SOCKET,
                 delete_queue: str = DEFAULT_DELETE_QUEUE) -> bytes:
    """The C client's executable, statically linked (`cc -static -O2`: glibc's libc.a from
    libc6-dev, or musl-gcc); CalledProcessError if it does not build."""
    import subprocess

    from cni.config import SUPPORTED_VERSIONS

    with open(CLIENT_SOURCE, "rb") as fh:
        source = fh.read()
    key = (cc, source, socket_path, delete_queue)
    if key not in _BUILT:
        versions = ",".join(f'"{v}"' for v in SUPPORTED_VERSIONS)
        with tempfile.TemporaryDirectory(prefix="flatroute-cni-") as tmp:
            out = os.path.join(tmp, BINARY)
            subprocess.run([cc, "-std=c99", "-O2", "-Wall", "-Wextra", "-static", "-s",
                            f"-DFLATROUTE_CNI_SOCKET={_c_string(socket_path)}",
                            f"-DFLATROUTE_CNI_DELETE_QUEUE={_c_string(delete_queue)}",
                            f"-DFLATROUTE_CNI_VERSIONS={_c_string(versions)}", "-o", out,
                            CLIENT_SOURCE], check=True, capture_output=True, text=True,
                           timeout=120)
            with open(out, "rb") as fh:
                _BUILT[key] = fh.read()
    return _BUILT[key]


def is_static_client(data: bytes) -> bool:
    """An ELF executable carrying the client's marker, with no program interpreter (PT_INTERP)
    and no dynamic section (PT_DYNAMIC): it loads no shared library from the host."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:  # 64-bit little-endian only
        return False
    phoff = int.from_bytes(data[32:40], "little")
    size, count = int.from_bytes(data[54:56], "little"), int.from_bytes(data[56:58], "little")
    for i in range(count):
        kind = int.from_bytes(data[phoff + i * size:phoff + i * size + 4], "little")
        if kind in (2, 3):  # PT_DYNAMIC, PT_INTERP
            return False
    return CLIENT_MARKER.encode() in data


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
            socket_path: str = DEFAULT_SOCKET, delete_queue: str = DEFAULT_DELETE_QUEUE,
            client_binary: str | None = None, python_plugin: bool = True,
            note: Callable[[str], object] | None = None, **conf: object) -> list[str]:
    """Write flatroute-cni (the static C client: built here, or copied from client_binary; the
    launcher without a compiler or with client=False), flatroute-cni-py (the launcher, unless
    python_plugin=False) and the conflist; return their paths."""
    binary = os.path.join(bin_dir, BINARY)
    py_binary = os.path.join(bin_dir, PY_BINARY)
    conf_path = os.path.join(conf_dir, CONFLIST)
    built = _client_bytes(client_binary, socket_path, delete_queue, note) if client else None
    text = launcher(python or default_python()) if python_plugin or built is None else ""
    written = [binary]
    if python_plugin:
        _write_atomic(py_binary, text, 0o755)
        written.append(py_binary)
    _write_atomic(binary, built if built is not None else text, 0o755)
    _write_atomic(conf_path, json.dumps(conflist(**conf), indent=2) + "\n",  # type: ignore[arg-type]
                  0o644)
    return [*written, conf_path]


class ClientError(OSError):
    """--client-binary is not the static flatroute-cni client."""


def _client_bytes(client_binary: str | None, socket_path: str, delete_queue: str,
                  note: Callable[[str], object] | None) -> bytes | None:
    """The client to install: the prebuilt one, checked, or one built here; None without a
    compiler (the launcher is installed instead, with a note)."""
    import subprocess

    if client_binary:
        with open(client_binary, "rb") as fh:
            data = fh.read()
        if not is_static_client(data):
            raise ClientError(0, "not a statically linked flatroute-cni client", client_binary)
        return data
    cc = c_compiler()
    why = "no C compiler (cc) found"
    if cc:
        try:
            return build_client(cc, socket_path, delete_queue)
        except (OSError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", "") or str(exc)
            why = f"{cc} could not build it: {detail.strip().splitlines()[-1:]}"
    if note is not None:
        note(f"note: {BINARY} is the Python plugin (~25 ms per call, needs python3 >= 3.11 on "
             f"the host): the static C client needs gcc and libc6-dev; {why}")
    return None


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
    from cni.config import SUPPORTED_VERSIONS

    sub = parser.add_subparsers(dest="cni_command", required=True)
    serve.configure_parser(sub.add_parser(
        "serve", help="the resident service the C client hands requests to (run as root, in "
        "the namespace plugins run in)"))
    build = sub.add_parser("build-client", help="build the static C client (for an image)")
    build.add_argument("--output", required=True)
    _client_paths(build)
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
            p.add_argument("--cni-version", default="1.1.0", choices=SUPPORTED_VERSIONS,
                           help="the conflist's cniVersion (default 1.1.0; 1.0.0 for "
                           "containerd < 2.0 and for chains with Debian's reference plugins)")
            p.add_argument("--no-client", dest="client", action="store_false",
                           help="install the Python plugin as flatroute-cni, not the C client")
            p.add_argument("--client-binary", default=None,
                           help="install this prebuilt static client (flatroute cni "
                           "build-client) instead of compiling one")
            p.add_argument("--no-python-plugin", dest="python_plugin", action="store_false",
                           help="do not write flatroute-cni-py (a node without python3 >= 3.11)")
            _client_paths(p)
    return parser


def _client_paths(p: argparse.ArgumentParser) -> None:
    p.add_argument("--socket", default=DEFAULT_SOCKET,
                   help="the service socket compiled into the client (default "
                   f"{DEFAULT_SOCKET}; FLATROUTE_CNI_SOCKET overrides it at run time)")
    p.add_argument("--delete-queue", default=DEFAULT_DELETE_QUEUE,
                   help="where the client queues a DEL while the service is down (default "
                   f"{DEFAULT_DELETE_QUEUE}; FLATROUTE_CNI_DELETE_QUEUE overrides it)")


def build_parser(prog: str = "flatroute cni") -> argparse.ArgumentParser:
    return configure_parser(argparse.ArgumentParser(prog=prog,
                                                    description="install the CNI plugin"))


def run(args: argparse.Namespace) -> int:
    if args.cni_command == "serve":
        from cni import serve

        return serve.run(args)
    try:
        if args.cni_command == "build-client":
            return _build_to(args.output, args.socket, args.delete_queue)
        if args.cni_command == "install":
            paths = install(args.bin_dir, args.conf_dir, args.python, client=args.client,
                            socket_path=args.socket, delete_queue=args.delete_queue,
                            client_binary=args.client_binary,
                            python_plugin=args.python_plugin,
                            note=lambda text: print(text, file=sys.stderr), name=args.name,
                            mtu=args.mtu, node_file=args.node_file, data_dir=args.data_dir,
                            portmap=args.portmap, cni_version=args.cni_version)
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


def _build_to(output: str, socket_path: str, delete_queue: str) -> int:
    import subprocess

    cc = c_compiler()
    if cc is None:
        print("flatroute cni build-client: no C compiler (install gcc and libc6-dev)",
              file=sys.stderr)
        return 1
    try:
        data = build_client(cc, socket_path, delete_queue)
    except subprocess.CalledProcessError as exc:
        print(f"flatroute cni build-client: {cc} failed: {exc.stderr.strip()}", file=sys.stderr)
        return 1
    _write_atomic(output, data, 0o755)
    print(f"wrote {output} ({len(data)} bytes, statically linked)")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
