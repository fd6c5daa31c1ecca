"""`geospot data inspect SPEC` and `geospot data pack SPEC --out DIR`.

inspect: reads the spec once (no repeat, no shuffle) and reports the sample count, skips by
reason, samples per source and the coordinate bounds; `--json` prints one object
{"samples": int, "skipped": {reason: int}, "sources": {name: int}}. No usable sample: exit 2.
pack: writes any spec as WebDataset shards in the sdan/geospot-unified member layout
(`<key>.jpg` + `<key>.json` {lat, lon, city, country, source, id}), e.g. to build a local mirror,
and beside them PACK_RECORD, what they were packed from."""

from __future__ import annotations

import argparse
import json
import os
import sys
from itertools import islice

from geospot.config import ConfigError, FlagParser
from geospot.data.spec import SpecError
from geospot.data.spec_paths import PACK_RECORD, rebase_spec
from geospot.data.stream import SPLITS, open_stream


def _parser() -> argparse.ArgumentParser:
    p = FlagParser(prog="geospot data", description="Inspect or pack a data spec "
                                "(grammar: geospot/data/spec.py, e.g. synthetic:n=2000 or a folder).")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, helptext in (("inspect", "count samples, skips by reason, sources, coordinate bounds"),
                           ("pack", "write the samples as geospot-unified WebDataset shards")):
        q = sub.add_parser(name, help=helptext, key_values=("out",) if name == "pack" else ())
        q.add_argument("spec", help="a data spec: a folder, a file, hf:<owner/name>, synthetic:n=…; parts joined by ;")
        q.add_argument("--split", default="all", choices=SPLITS, help="split by id hash (default: all)")
        q.add_argument("--limit", type=int, default=None, help="stop after N samples")
        q.add_argument("--max-side", type=int, default=512, help="longest image side (px), 0 keeps it")
        q.add_argument("--workers", type=int, default=2,
                       help="image preparation threads (0 = in the calling thread; default: 2)")
        if name == "inspect":
            q.add_argument("--json", action="store_true", help="print one JSON object")
        else:
            q.add_argument("out_folder", nargs="?", metavar="OUT", help="output folder (or --out OUT)")
            q.add_argument("--out", help="output folder")
            q.add_argument("--shard-size", type=int, default=1000, help="samples per shard")
            q.add_argument("--prefix", default="shard", help="shard file name prefix")
    return p


def _stream(args):
    # in order, read once: the seed (a training run's shuffle) plays no part
    # (finite, so no limit on unusable records in a row: inspect counts them all, whatever their run)
    return open_stream(args.spec, args.split, 0, repeat=False, shuffle=False,
                       max_side=args.max_side, workers=args.workers, max_skips_in_a_row=0)


def inspect(args) -> int:
    n, sources = 0, {}
    lat_lo = lon_lo = float("inf")
    lat_hi = lon_hi = float("-inf")
    with _stream(args) as stream:
        for s in islice(stream, args.limit):
            n += 1
            sources[s.source] = sources.get(s.source, 0) + 1
            lat_lo, lat_hi = min(lat_lo, s.lat), max(lat_hi, s.lat)
            lon_lo, lon_hi = min(lon_lo, s.lon), max(lon_hi, s.lon)
        skipped, fixed = dict(sorted(stream.skipped.items())), dict(sorted(stream.fixed.items()))
        # photos in a labelled folder that no row names are not read at all: not a skip, so said apart
        unnamed = [p for src in stream.sources if hasattr(src, "unnamed_images") for p in src.unnamed_images()]
    if not n and args.limit != 0:  # a script must see it, as pack's "no usable sample" (exit 2)
        why = ("its skips by reason say why" if skipped else "no record of it is in that split: try --split all"
               if args.split != "all" else "it holds no record")
        print(f"geospot data: {args.spec!r} gave no usable sample (split {args.split}); {why}", file=sys.stderr)
    if args.json:
        bounds = {"latitude": [lat_lo, lat_hi], "longitude": [lon_lo, lon_hi]} if n else {
            "latitude": None, "longitude": None}  # the text's lines, as [min, max]
        print(json.dumps({"samples": n, "skipped": skipped, "fixed": fixed, "sources": dict(sorted(sources.items())),
                          **bounds, "images_without_a_row": len(unnamed)}))
        return 0 if n or args.limit == 0 else 2
    print(f"spec: {args.spec} (split {args.split})")
    print(f"samples: {n}")
    print(f"skipped: {sum(skipped.values())}" + "".join(f"\n  {k}: {v}" for k, v in skipped.items()))
    if fixed:
        print("fixed (kept):" + "".join(f"\n  {k}: {v}" for k, v in fixed.items()))
    if unnamed:
        print(f"images no row names (not read): {len(unnamed)}, e.g. {unnamed[0]}; give each a row to use it")
    print("sources:" + "".join(f"\n  {k}: {v} ({v / max(n, 1):.1%})" for k, v in sorted(sources.items())))
    if n:
        print(f"latitude: {lat_lo:.4f} .. {lat_hi:.4f}")
        print(f"longitude: {lon_lo:.4f} .. {lon_hi:.4f}")
    return 0 if n or args.limit == 0 else 2


def pack(args) -> int:
    from geospot.data.pack import write_shards

    with _stream(args) as stream:
        counter = {"n": 0}

        def counted():
            for s in islice(stream, args.limit):
                counter["n"] += 1
                yield s

        paths = write_shards(counted(), args.out, shard_size=args.shard_size, prefix=args.prefix)
        skipped, side = dict(stream.skipped), stream.cfg.max_side
    # what the shards hold is not the originals: say so, and how to keep more
    size = (f"longest side at most {side} px (--max-side 0 keeps full size)" if side else "at full size")
    print(f"wrote {counter['n']} samples in {len(paths)} shard(s) to {args.out}, as JPEG (quality 90), {size}"
          + (f"; skipped {sum(skipped.values())}: {json.dumps(skipped)}" if skipped else ""))
    if not paths:  # nothing written is a failure a script must see, not a quiet success
        print(f"geospot data: {args.spec!r} gave no usable sample to pack; see `geospot data inspect "
              f"'{args.spec}'`", file=sys.stderr)
        return 2
    source, record = rebase_spec(args.spec, os.getcwd()), os.path.join(args.out, PACK_RECORD)
    if source is not None:  # eval of a run trained on these shards knows its held-out images of the original
        with open(record, "w", encoding="utf-8") as f:
            json.dump({"from": source, "split": args.split, "samples": counter["n"]}, f)
    elif os.path.exists(record):  # an earlier pack's record would name another source for these shards
        os.remove(record)
    print(f"read them back with: geospot data inspect '{args.out}/{args.prefix}-{{000000..{len(paths) - 1:06d}}}.tar'")
    return 0


def _pack_problem(args) -> str | None:
    """What is wrong with pack's output options, as argparse's error text; None when nothing."""
    if args.limit == 0:
        return "--limit 0 packs nothing: give a number of samples >= 1, or leave it out (all of them)"
    if args.shard_size < 1:
        return f"--shard-size {args.shard_size}: give the samples per shard, >= 1"
    if not args.prefix or "/" in args.prefix or os.sep in args.prefix:
        return f"--prefix {args.prefix!r}: give a file name start without '/', e.g. --prefix shard"
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        return f"{args.out} is a file: give a folder to write the shards into"
    # shards of an earlier pack would be read with the new ones, a sample of each twice or stale ones
    old = sorted(n for n in os.listdir(args.out) if n.endswith((".tar", ".tar.gz", ".tgz"))) \
        if os.path.isdir(args.out) else []
    if old:
        return (f"{args.out} already holds .tar files ({', '.join(old[:2])}{', …' if len(old) > 2 else ''}), which a "
                "reader of the folder would read as shards with the new ones: give an empty folder, or move them")
    return None


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.spec.startswith("data=") and not os.path.exists(args.spec):  # the training commands' key, typed here
        args.spec = args.spec[len("data="):]
    if args.limit is not None and args.limit < 0:
        parser.error(f"--limit {args.limit}: give a number of samples >= 0 (or leave it out: all of them)")
    if args.cmd == "pack":
        if args.out and args.out_folder and args.out != args.out_folder:
            parser.error(f"two output folders given ({args.out_folder} and --out {args.out}): give one")
        if args.out_folder and args.out_folder.startswith("out=") and not os.path.exists(args.out_folder):
            args.out_folder = args.out_folder[len("out="):]  # the export command's key, typed here
        args.out = args.out or args.out_folder
        if not args.out:
            parser.error("pack needs an output folder: geospot data pack SPEC OUT")
        problem = _pack_problem(args)
        if problem:
            parser.error(problem)
    try:
        return inspect(args) if args.cmd == "inspect" else pack(args)
    except (SpecError, ConfigError) as e:
        print(f"geospot data: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
