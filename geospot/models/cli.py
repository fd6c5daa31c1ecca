"""`geospot model tiny --family qwen2_vl|qwen2_5_vl|qwen3_vl --size tiny|small [--out DIR]`"""

from __future__ import annotations

import argparse
import json
import sys

from geospot.config import ConfigError, FlagParser
from geospot.models.tiny import FAMILIES, SIZES, build_tiny_model


def _parser() -> argparse.ArgumentParser:
    parser = FlagParser(prog="geospot model", description="model utilities")
    sub = parser.add_subparsers(dest="cmd", required=True)
    tiny = sub.add_parser("tiny", help="build a random-initialised tiny Qwen-VL model with an offline tokenizer")
    tiny.add_argument("--family", choices=FAMILIES, default="qwen2_5_vl",
                      help="the architecture, as a tiny:<family> model name says (default: qwen2_5_vl)")
    tiny.add_argument("--size", choices=SIZES, default="tiny",
                      help="tiny: 2 layers 64 wide (the demo's, the tests'); small: 8 layers 256 wide (the speed "
                           "benchmarks') (default: tiny)")
    tiny.add_argument("--out", default=None, help="output folder (default: the geospot cache)")
    tiny.add_argument("--seed", type=int, default=0, help="seed of the random weights (default: 0)")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.cmd == "tiny":
        try:
            path = build_tiny_model(args.family, args.size, args.out, args.seed)
        except ConfigError as e:  # (a cache or --out folder it cannot write)
            print(f"geospot model: {e}", file=sys.stderr)
            return 2
        info = json.loads((path / "geospot_tiny.json").read_text())
        print(json.dumps({"path": str(path), **info}))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
