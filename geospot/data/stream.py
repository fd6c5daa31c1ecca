"""The sample stream: spec -> sources -> split filter -> mixing -> shuffle buffer -> cursor
-> image preparation in worker threads -> Sample.

Everything before the cursor is a deterministic function of (spec, split, seed) and does no
decoding, so `load_state_dict` restores a cursor by rebuilding that pipeline and replaying
it up to the saved position (records are read, images are not decoded); the samples that
follow are then exactly those an uninterrupted run would have produced."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import Any

import numpy as np

from geospot.config import ConfigError, _coerce, field_types
from geospot.data.csv_source import CsvFolderSource
from geospot.data.dedup import read_coords, resolve_parts
from geospot.data.files import FileBytes
from geospot.data.options import STREAM_KEYS, StreamConfig
from geospot.data.prep import (
    BadSample,
    PrepConfig,
    check_coords,
    latitude_beyond_90,
    looks_swapped,
    one_torch_thread,
    prepare_image,
)
from geospot.data.sources import (
    JsonlSource,
    LocalOpener,
    ParquetSource,
    Record,
    Skip,
    Source,
    SyntheticSource,
)
from geospot.data.spec import SpecError, SpecPart, build_source, parse_spec
from geospot.data.types import DataError, Sample

log = logging.getLogger("geospot.data")
SPLITS = ("train", "val", "test", "heldout", "all")  # heldout: val + test, every id training never reads
# ids, and as many images, per source and epoch checked for duplicates (~250 MB at most, freed each epoch)
MAX_TRACKED_IDS = 1_000_000
SWAP_CHECK_ROWS = 1000  # rows of each local table read for the swapped-columns check (no image is decoded)
TABLES = (CsvFolderSource, JsonlSource, ParquetSource)  # a user's own tables; hub shards are curated


def spec_stream_options(parts: list[SpecPart]) -> tuple[list[SpecPart], dict[str, Any]]:
    """Stream options written inside a spec's parts (`synthetic:n=500,val_frac=0.2`): the parts
    without them, and the options (typed). They apply to the whole stream, so two parts that
    set one differently are an error rather than a silent pick."""
    types, found, clean = field_types(StreamConfig), {}, []
    for part in parts:
        for key, raw in part.options.items():
            if key not in STREAM_KEYS:
                continue
            try:
                value = _coerce(key, raw, types[key])
            except ConfigError as e:
                raise SpecError(f"{part.text!r}: {e}") from None
            if key in found and found[key] != value:
                raise SpecError(f"{part.text!r}: stream option {key} is {value!r} here but {found[key]!r} in an "
                                "earlier part; stream options apply to the whole stream, so set it once")
            found[key] = value
        clean.append(dataclasses.replace(part, options={k: v for k, v in part.options.items() if k not in STREAM_KEYS}))
    return clean, found


NAMED_EVERY_TIME = frozenset({"truncated_tar"})  # skip reasons that lose a whole file of samples


def skip_reasons(counts: dict[str, int]) -> str:
    """Skip counts as one phrase, the most frequent reason first: "missing_image 3, bad_coords 1"."""
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])) or "nothing read"


def split_of(sample_id: str, val_frac: float = 0.05, test_frac: float = 0.05) -> str:
    """train / val / test from a hash of the id: stable across runs, machines and sources."""
    h = int.from_bytes(hashlib.blake2b(sample_id.encode(), digest_size=8).digest(), "big") / 2.0**64
    if h < val_frac:
        return "val"
    if h < val_frac + test_frac:
        return "test"
    return "train"


def _mix(iters: list[Iterator], weights: list[float]) -> Iterator:
    """Smooth weighted round robin: shares match the weights over every window."""
    active = list(range(len(iters)))
    credit = [0.0] * len(iters)
    while active:
        total = sum(weights[i] for i in active)
        for i in active:
            credit[i] += weights[i]
        j = max(active, key=lambda i: credit[i])
        credit[j] -= total
        try:
            yield next(iters[j])
        except StopIteration:
            active.remove(j)
            credit[j] = 0.0


def _shuffle(it: Iterator, size: int, rng: np.random.Generator) -> Iterator:
    buf: list = []
    for item in it:
        if len(buf) < size:
            buf.append(item)
            continue
        j = int(rng.integers(size))
        yield buf[j]
        buf[j] = item
    for j in rng.permutation(len(buf)):
        yield buf[int(j)]


def _prepare(item: Record | Skip, cfg: PrepConfig) -> tuple[Sample | Skip, list[str]]:
    if isinstance(item, Skip):
        return item, []
    fixes: list[str] = []
    try:
        payload = item.payload() if callable(item.payload) else item.payload
        if isinstance(payload, Sample):  # synthetic: complete already (still honour max_side)
            if cfg.max_side and max(payload.image.size) > cfg.max_side:
                payload = dataclasses.replace(payload, image=prepare_image(payload.image, cfg, fixes))
            return payload, fixes
        lat, lon = check_coords(item.lat, item.lon)
        image = prepare_image(payload, cfg, fixes)
        return Sample(id=item.id, image=image, lat=lat, lon=lon, labels=dict(item.labels), source=item.source), fixes
    except BadSample as e:
        return Skip(e.reason, f"{item.id}: {e.detail}", item.source), fixes
    except OSError as e:  # e.g. a file vanished between listing and reading
        return Skip("read_error", f"{item.id}: {e}", item.source), fixes


class SampleStream:
    """Iterator of Samples. `.skipped` / `.fixed` count damaged inputs by reason;
    `.position` is the cursor (records consumed after shuffling)."""

    def __init__(self, spec: str, split: str = "train", seed: int = 0, cfg: StreamConfig | None = None,
                 force: dict[str, Any] | None = None):
        """Stream options come from `cfg`, then those written in the spec, then `force`
        (what the caller cannot do without, e.g. load_samples' repeat=False)."""
        if split not in SPLITS:
            raise ConfigError(f"split={split!r}: use one of {', '.join(SPLITS)}")
        self.spec, self.split, self.seed = spec, split, int(seed)
        self.parts, in_spec = spec_stream_options(parse_spec(spec))
        self.cfg = dataclasses.replace(cfg or StreamConfig(), **{**in_spec, **(force or {})})
        self.cfg.validate()
        self.repeat = self.cfg.repeat if self.cfg.repeat is not None else split == "train"
        self.shuffle = self.cfg.shuffle if self.cfg.shuffle is not None else split == "train"
        self.sources: list[Source] = [build_source(p) for p in self.parts]
        self.prep = PrepConfig(**{f.name: getattr(self.cfg, f.name) for f in dataclasses.fields(PrepConfig)})
        self._pool = ThreadPoolExecutor(self.cfg.workers, thread_name_prefix="geospot-data",
                                        initializer=one_torch_thread) if self.cfg.workers else None
        self.skipped: dict[str, int] = {}
        self.fixed: dict[str, int] = {}
        self._logged: set = set()  # skip reasons said (a lost file's: reason and detail)
        self._dry: dict[str, int] = {}  # skips since the last sample, by reason
        self._epoch_records: dict[int, int] = {}  # records of this split in a source's first full pass
        self._passes: dict[int, int] = {}  # passes begun over each source (skips are counted on every one)
        self.check_columns()
        self._resolved = resolve_parts([p.text for p in self.parts], self.sources)
        if self.repeat:  # a repeating stream with nothing usable would search for ever: find out now
            self.probe()
        self._restart(0)

    def check_columns(self) -> None:
        """A DataError when a local table's latitude and longitude columns look swapped (prep.
        looks_swapped): otherwise every row with a longitude within ±90° would be kept with its
        coordinates mirrored, a wrong label for each, and only the others skipped."""
        for part, src in zip(self.parts, self.sources):
            # a user's local tables only: hub parquet (osv5m/osv5m) is curated, and reading its first row
            # group here would download images at every stream's start
            if not isinstance(src, TABLES) or not isinstance(getattr(src, "opener", LocalOpener()), LocalOpener):
                continue
            records = src.records(0, self.seed, shuffle=False)
            try:
                rows = list(islice((r for r in records if isinstance(r, Record)), SWAP_CHECK_ROWS))
                found = looks_swapped([(r.lat, r.lon) for r in rows])
            finally:
                records.close()  # its file is closed now, not when the generator is collected
            if found:
                beyond, n = found
                first = next((r for r in rows if latitude_beyond_90(r.lat)), None)
                example = f" (the first: {first.id!r}, latitude {first.lat})" if first is not None else ""
                raise DataError(f"data part {part.text!r}: {beyond} of the {n} rows with coordinates read first have "
                                f"a latitude beyond ±90°{example} and no longitude is beyond ±90°, so the latitude and "
                                "longitude columns look swapped (every row's place mirrored); swap them in the file or "
                                "name them with lat=<column>,lon=<column>, or, if those rows are typos, fix or delete "
                                "them")

    def probe(self) -> None:
        """Each part must give at least one usable sample in this split, else a DataError
        naming the part, what its records were skipped for and what to do. Reads a part's
        records in order, decoding in this thread, until the first sample (or its end, or
        max_skips_in_a_row unusable ones): on good data that is one record per part."""
        limit = self.cfg.max_skips_in_a_row or None
        for k, (part, src) in enumerate(zip(self.parts, self.sources)):
            counts: dict[str, int] = {}
            example = ""  # the first skip's own words: often the fix itself (name the key with image=<key>)
            for item in self._filtered(k, src, 0, shuffle=False):
                result, _ = _prepare(item, self.prep)
                if not isinstance(result, Skip):
                    break
                counts[result.reason] = counts.get(result.reason, 0) + 1
                example = example or f"; the first: {result.detail[:300]}"
                if limit is not None and sum(counts.values()) >= limit:
                    raise DataError(f"data part {part.text!r}: its first {limit} records in split {self.split!r} "
                                    f"are all unusable ({skip_reasons(counts)}{example}); fix the data or the spec's "
                                    f"lat=/lon=/id=/image= options (see `geospot data inspect '{part.text}'`)")
            else:
                frac = "val_frac" if self.split == "heldout" else f"{self.split}_frac"
                tiny = (f", or raise {frac} for a tiny split"
                        if self.split in ("val", "test", "heldout") and not counts else "")
                raise DataError(f"data part {part.text!r} has no usable record in split {self.split!r} "
                                f"({sum(counts.values())} read: {skip_reasons(counts)}{example}); fix the data or the "
                                f"spec's lat=/lon=/id=/image= options{tiny} (see `geospot data inspect '{part.text}'`)")

    # -- the deterministic part (no decoding) ---------------------------------------------

    def _filtered(self, k: int, src: Source, epoch: int, shuffle: bool) -> Iterator[Record | Skip]:
        """One epoch of a source: this split's records (by id hash), the source's own skips, and
        what the data says twice as skips. A local CSV / JSONL part's is decided once for every pass
        and split (dedup.py); elsewhere the record read first wins: a repeated id is `duplicate_id`
        (`_conflict` when its coordinates differ), a file or bytes an earlier id named are
        `duplicate_image` (`_conflict`) in every split. One photo is never trained and held out."""
        seen: dict[int, int] = {}  # id hash -> coordinates hash
        files: dict[int, tuple[int, int]] = {}  # a local image file -> (the id that named it first, its coordinates)
        track = not isinstance(src, SyntheticSource)  # synthetic ids are unique by construction
        resolved = self._resolved.get(k)  # a local table's duplicates, decided whatever the order (dedup.py)
        for item in src.records(epoch, self.seed * 1_000_003 + k, shuffle):
            if isinstance(item, Skip) and item.id is not None and not self._in_split(item.id):
                continue  # a row of another split: counted there, not in every split
            if isinstance(item, Record):
                coords, bad = read_coords(item.lat, item.lon) if track else (None, None)  # both checks compare them
                if bad is not None:  # skipped for them before its image is read (a pass counts labelled records)
                    if self._in_split(item.id):
                        yield Skip(bad.reason, f"{item.id}: {bad.detail}", item.source)
                    continue
                # decided once for a local table's rows (dedup.py); the per-pass claim catches the rest (a row
                # appended since the stream opened): a file is claimed in every split, whichever its id is in
                again = resolved.skip(item, coords) if resolved is not None else None
                if again is None and track:
                    again = self._named_before(item, hash(coords), files)
                if not self._in_split(item.id):
                    continue
                if again is not None:
                    yield again
                    continue
                if track:
                    digest = hashlib.blake2b(item.id.encode(errors="replace"), digest_size=8).digest()
                    key = int.from_bytes(digest, "big")
                    first = seen.get(key)
                    if first is not None:
                        same = first == hash(coords)
                        yield Skip("duplicate_id" if same else "duplicate_id_conflict",
                                   f"{item.id} seen before{' with the same' if same else ', now with other'} "
                                   f"coordinates {coords}", item.source)
                        continue
                    if len(seen) < MAX_TRACKED_IDS:
                        seen[key] = hash(coords)
            yield item

    def _in_split(self, sample_id: str) -> bool:
        if self.split == "all":
            return True
        found = split_of(sample_id, self.cfg.val_frac, self.cfg.test_frac)
        return found == self.split or (self.split == "heldout" and found != "train")

    @staticmethod
    def _named_before(item: Record, coords: int, files: dict[int, tuple[int, int]]) -> Skip | None:
        """A Skip when `item`'s image (a local file, or the same bytes in a table or shard) came
        with an earlier record of another id; else None (and it is remembered, by hashes; `coords`:
        the hash of its coordinates as read)."""
        payload = item.payload
        if isinstance(payload, FileBytes):
            what = os.path.normpath(os.path.abspath(payload.path))
            key = hash(what)
        elif isinstance(payload, (bytes, bytearray)):  # a parquet cell, a tar member: the bytes are the photo
            # its length and first 4 KB (a photo's headers and first scan lines): a few microseconds
            # a record, where hashing whole photos would slow a hub stream
            what = "the same image bytes"
            key = hash((len(payload), hashlib.blake2b(bytes(payload[:4096]), digest_size=8).digest()))
        else:
            return None
        first = files.get(key)
        if first is None:
            if len(files) < MAX_TRACKED_IDS:
                files[key] = (hash(item.id), coords)
            return None
        if first[0] == hash(item.id):
            return None  # the same id again: duplicate_id's to say
        same = first[1] == coords
        return Skip("duplicate_image" if same else "duplicate_image_conflict",
                    f"{item.id} names {what}, which another id named before"
                    f"{' with the same' if same else ', with other'} coordinates", item.source)

    def _source_iter(self, k: int, src: Source) -> Iterator[Record | Skip]:
        epoch = 0
        while True:
            n = 0
            self._passes[k] = epoch + 1
            for item in self._filtered(k, src, epoch, self.shuffle):
                n += isinstance(item, Record)
                yield item
            self._epoch_records.setdefault(k, n)
            if not self.repeat:
                return
            if n == 0:  # only skips (the probe catches this first; a source can change under us)
                raise DataError(f"data part {self.parts[k].text!r} has no usable record in split {self.split!r}; "
                                f"see `geospot data inspect '{self.parts[k].text}'`")
            epoch += 1

    def _records(self) -> Iterator[Record | Skip]:
        iters = [self._source_iter(k, s) for k, s in enumerate(self.sources)]
        it = iters[0] if len(iters) == 1 else _mix(iters, [p.weight for p in self.parts])
        if self.shuffle and self.cfg.shuffle_buffer > 1:
            it = _shuffle(it, self.cfg.shuffle_buffer, np.random.default_rng([self.seed, 0xB0FF]))
        return it

    def _restart(self, position: int) -> None:
        for f in getattr(self, "_pending", ()):
            if isinstance(f, Future):
                f.cancel()
        self._pending: deque = deque()
        self._upstream = self._records()
        self.position = 0
        for _ in islice(self._upstream, position):  # replay without decoding
            self.position += 1
        if self.position != position:
            raise ValueError(f"cursor position {position} is past the end of {self.spec!r} ({self.position} records)")
        self._exhausted = False

    # -- the consumer side -----------------------------------------------------------------

    def _fill(self) -> None:
        while not self._exhausted and len(self._pending) < self.cfg.prefetch:
            try:
                item = next(self._upstream)
            except StopIteration:
                self._exhausted = True
                return
            if self._pool is None or isinstance(item, Skip):
                self._pending.append(_prepare(item, self.prep))  # a Skip passes straight through
            else:
                self._pending.append(self._pool.submit(_prepare, item, self.prep))

    def __iter__(self) -> SampleStream:
        return self

    def __next__(self) -> Sample:
        while True:
            self._fill()
            if not self._pending:
                raise StopIteration
            result = self._take_head()
            if result is not None:
                return result

    def _take_head(self) -> Sample | None:
        """Consume the first pending record: its sample, or None for a skip (counted by reason)."""
        head = self._pending.popleft()
        result, fixes = head.result() if isinstance(head, Future) else head
        self.position += 1
        for fix in fixes:
            self.fixed[fix] = self.fixed.get(fix, 0) + 1
        if isinstance(result, Skip):
            self._count_skip(result)
            self._dry[result.reason] = self._dry.get(result.reason, 0) + 1
            if self.cfg.max_skips_in_a_row and sum(self._dry.values()) >= self.cfg.max_skips_in_a_row:
                raise DataError(f"data {self.spec!r}: {sum(self._dry.values())} unusable records in a row "
                                f"({skip_reasons(self._dry)}); fix the data, or raise max_skips_in_a_row "
                                "if usable records are that rare")
            return None
        self._dry.clear()
        return result

    def has_more(self) -> bool:
        """Whether another sample will come. Decodes ahead past skipped records (consuming and
        counting them as `next()` would) to the next sample or the end, so a finite stream's end
        is known exactly, without taking that sample; a repeating stream always has more."""
        while True:
            self._fill()
            if not self._pending:
                return False
            head = self._pending[0]
            result, _ = head.result() if isinstance(head, Future) else head
            if not isinstance(result, Skip):
                return True
            self._take_head()

    @property
    def exhausted(self) -> bool:
        """True once a finite stream (repeat off) has given its last sample: `next()` raises
        StopIteration and `next_batch` returns [] from then on. A loop that asks for a batch
        and gets fewer samples than it asked for has reached the end of the data."""
        return self._exhausted and not self._pending

    def _count_skip(self, s: Skip) -> None:
        self.skipped[s.reason] = self.skipped.get(s.reason, 0) + 1
        # once per reason, the counts say how many; a whole file lost (a shard) is named, each file
        # once (a repeating stream reopens it every pass)
        key = (s.reason, s.detail) if s.reason in NAMED_EVERY_TIME else s.reason
        if key not in self._logged:
            self._logged.add(key)
            later = "" if s.reason in NAMED_EVERY_TIME else "; further ones are only counted"
            log.warning("data: skipping %s (%s) from %s%s", s.reason, s.detail, s.source, later)

    @property
    def records_per_pass(self) -> int | None:
        """Labelled records of this split in one pass (an image that fails to decode still counts),
        once every part has been read to its end — a small dataset is, by the first batch, through
        the shuffle buffer's look-ahead; None until then."""
        done = len(self._epoch_records) == len(self.sources)
        return sum(self._epoch_records.values()) if done else None

    @property
    def passes(self) -> int:
        """How many passes over the data have begun (the most over any part): a record skipped on
        each pass is counted on each, so skip counts grow with it."""
        return max(self._passes.values(), default=0)

    def next_batch(self, n: int) -> list[Sample]:
        """Up to n samples (fewer only when a finite stream ends)."""
        return list(islice(self, n))

    def state_dict(self) -> dict[str, Any]:
        return {"version": 1, "spec": self.spec, "split": self.split, "seed": self.seed,
                "position": self.position, "skipped": dict(self.skipped), "fixed": dict(self.fixed),
                "config": dataclasses.asdict(self.cfg)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("spec", "split", "seed"):
            if state.get(key) != getattr(self, key):
                raise ValueError(f"data cursor was saved for {key}={state.get(key)!r} but this stream has "
                                 f"{key}={getattr(self, key)!r}; open the stream with the saved {key}")
        if state.get("config") not in (None, dataclasses.asdict(self.cfg)):
            changed = [k for k, v in state["config"].items() if dataclasses.asdict(self.cfg).get(k) != v]
            log.warning("data: stream options changed since the cursor was saved (%s); the sequence may differ",
                        ", ".join(changed))
        self._restart(int(state["position"]))
        self.skipped = dict(state.get("skipped", {}))
        self.fixed = dict(state.get("fixed", {}))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> SampleStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def stream_config(**opts: Any) -> StreamConfig:
    names = {f.name for f in dataclasses.fields(StreamConfig)}
    bad = sorted(set(opts) - names)
    if bad:
        raise ConfigError(f"unknown stream option(s) {', '.join(bad)}; allowed: {', '.join(sorted(names))}")
    return StreamConfig(**opts)


def open_stream(spec: str, split: str = "train", seed: int = 0, *, force: dict[str, Any] | None = None,
                **opts: Any) -> SampleStream:
    """A stream of Samples from a spec string (see geospot.data.spec for the grammar).
    Options are StreamConfig fields (repeat, shuffle, workers, max_side, val_frac, ...);
    the same options written inside the spec override them, and `force` overrides both."""
    return SampleStream(spec, split, seed, stream_config(**opts), force=force)


def load_samples(spec: str, split: str = "val", n: int | None = None, seed: int = 0, **opts: Any) -> list[Sample]:
    """A fixed list: the first n samples of the split, in source order (no repeat, no shuffle
    unless asked), identical on every call."""
    opts.setdefault("shuffle", False)
    with open_stream(spec, split, seed, force={"repeat": False}, **opts) as stream:  # a list must end
        return list(islice(stream, n)) if n is not None else list(stream)
