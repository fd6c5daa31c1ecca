"""`geospot dashboard [DIR | --runs DIR] [--host 127.0.0.1] [--port N] [--token T] [--allowed-host NAME]`
— serve the live dashboard. Binding beyond loopback needs a token (--token, or the
GEOSPOT_DASHBOARD_TOKEN environment variable; `--token auto` makes one) and prints the URL
that carries it, as Jupyter does."""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
import sys
from pathlib import Path

from geospot.config import FlagParser

LOOPBACK_NAMES = {"localhost", "ip6-localhost"}
TOKEN_ENV = "GEOSPOT_DASHBOARD_TOKEN"


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, port: int) -> str:
    bar = "!" * 78
    return (f"{bar}\n!! WARNING: the geospot dashboard is bound to {host}:{port}, not to loopback.\n"
            "!! Anyone who can reach this machine on that port can read your runs: configs,\n"
            "!! metrics, photos and model outputs if it has the token. Safer: bind to\n"
            f"!! 127.0.0.1 and use an SSH tunnel (ssh -L {port}:127.0.0.1:{port} host) instead.\n{bar}")


def listen_port(host: str, port: int) -> int:
    """The port the dashboard will listen on: `port`, or for 0 a free one the system picks. The
    address is bound once here so a port already taken is said in one sentence before uvicorn
    starts, and the URL printed is the one that answers (uvicorn binds it again right after)."""
    bare = host.strip("[]")
    with socket.socket(socket.AF_INET6 if ":" in bare else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((bare, port))
        return s.getsockname()[1]


def main(argv: list[str]) -> int:
    p = FlagParser(prog="geospot dashboard", description=__doc__)
    p.add_argument("folder", nargs="?", default=None, help="the runs folder, as --runs says (`geospot dashboard runs`)")
    p.add_argument("--runs", default=None, help="folder holding run folders (each with store.sqlite); default runs")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default loopback only)")
    p.add_argument("--port", type=int, default=8765, help="port (0 picks a free one)")
    p.add_argument("--poll", type=float, default=0.25, help="seconds between store polls for live updates")
    p.add_argument("--token", default=os.environ.get(TOKEN_ENV) or None,
                   help=f"require this token on every request (default ${TOKEN_ENV}); `auto` makes one; "
                        "required to bind beyond loopback")
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="a host name the page may be served under besides localhost and IP addresses (repeatable)")
    args = p.parse_args(argv)
    if args.folder and args.runs and Path(args.folder) != Path(args.runs):
        print(f"geospot dashboard: two runs folders given ({args.folder} and --runs {args.runs}); pass one",
              file=sys.stderr)
        return 2

    if not 0 <= args.port <= 65535:
        print(f"geospot dashboard: --port {args.port}: a port is 0-65535 (0 picks a free one)", file=sys.stderr)
        return 2
    if not args.poll > 0:  # 0 polls each store as fast as it can, a core per page left open
        print(f"geospot dashboard: --poll {args.poll}: give the seconds between polls, above 0 (default 0.25)",
              file=sys.stderr)
        return 2
    runs = Path(args.folder or args.runs or "runs")
    if not runs.is_dir():
        what = (f"{runs} is a file, not a folder: pass the folder holding the run folders, e.g. {runs.parent.parent}"
                if runs.is_file() else f"runs folder {runs} does not exist; pass --runs DIR "
                "(the folder your training writes run folders into)")
        print(f"geospot dashboard: {what}", file=sys.stderr)
        return 2
    try:
        import uvicorn
    except ImportError:
        print("geospot dashboard needs uvicorn and starlette: pip install -e '.[dashboard]' in the geospot clone "
              "(installed from a copy of it: pip install uvicorn starlette)", file=sys.stderr)
        return 2
    from geospot.dashboard.app import create_app

    token = secrets.token_urlsafe(24) if args.token == "auto" else args.token
    if not is_loopback(args.host):
        if not token:
            print(f"geospot dashboard: binding to {args.host} exposes your runs beyond this machine; pass --token "
                  f"auto (or --token T, or set {TOKEN_ENV}), or bind to 127.0.0.1 and use an SSH tunnel",
                  file=sys.stderr)
            return 2
    try:
        port = listen_port(args.host, args.port)
    except socket.gaierror as e:  # (an OSError too) the host, not the port
        print(f"geospot dashboard: --host {args.host}: no such address here ({e.strerror or e}); pass an address "
              "of this machine, e.g. 127.0.0.1 or 0.0.0.0", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"geospot dashboard: cannot listen on {args.host}:{args.port} ({e.strerror or e}): another dashboard "
              "or program may have it; pass --port N (0 picks a free one)", file=sys.stderr)
        return 2
    if not is_loopback(args.host):
        print(exposure_warning(args.host, port), file=sys.stderr, flush=True)
    url = f"http://{args.host}:{port}/" + (f"?token={token}" if token else "")
    print(f"geospot dashboard: serving {runs.resolve()} at\n    {url}", flush=True)
    app = create_app(runs, poll_s=args.poll, allowed_hosts=tuple(args.allowed_host), bound_host=args.host,
                     token=token)
    uvicorn.run(app, host=args.host, port=port, log_level="warning", timeout_graceful_shutdown=2)
    return 0
