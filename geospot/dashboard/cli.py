"""`geospot dashboard [--runs DIR] [--host 127.0.0.1] [--port N]` — serve the live dashboard."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path

LOOPBACK_NAMES = {"localhost", "ip6-localhost"}


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
            "!! metrics, photos and model outputs. There is no authentication. Bind to\n"
            f"!! 127.0.0.1 and use an SSH tunnel (ssh -L {port}:127.0.0.1:{port} host) instead.\n{bar}")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="geospot dashboard", description=__doc__)
    p.add_argument("--runs", default="runs", help="folder holding run folders (each with store.sqlite)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default loopback only)")
    p.add_argument("--port", type=int, default=8765, help="port (0 picks a free one)")
    p.add_argument("--poll", type=float, default=0.25, help="seconds between store polls for live updates")
    args = p.parse_args(argv)

    runs = Path(args.runs)
    if not runs.is_dir():
        print(f"geospot dashboard: runs folder {runs} does not exist; pass --runs DIR "
              "(the folder your training writes run folders into)", file=sys.stderr)
        return 2
    try:
        import uvicorn
    except ImportError:
        print("geospot dashboard needs uvicorn and starlette: pip install 'geospot[dashboard]'", file=sys.stderr)
        return 2
    from geospot.dashboard.app import create_app

    if not is_loopback(args.host):
        print(exposure_warning(args.host, args.port), file=sys.stderr, flush=True)
    print(f"geospot dashboard: serving {runs.resolve()} at http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(create_app(runs, poll_s=args.poll), host=args.host, port=args.port, log_level="warning",
                timeout_graceful_shutdown=2)
    return 0
