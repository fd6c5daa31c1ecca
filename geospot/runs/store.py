"""The run store: one SQLite file per run folder, written by training, read by dashboards.

Why SQLite in WAL mode: the trainer appends while any number of dashboards read the same
file, readers never block the writer and never see half a step. Why a background thread:
training must never wait on (or die of) a slow or broken disk, so `RunStore` methods only
put a small job on a bounded queue and return; the writer thread applies jobs one
transaction each. A full queue drops the job, a failing job is logged; both are counted
(`failed_writes`, `dropped_writes`) and the counts are saved in `meta` at close.

Every write transaction bumps one global counter, `seq`, and stamps the rows it touched
with it. Readers ask "what changed after seq N?" — that is how the dashboard's live stream
resumes without losing events (`RunReader.events_since`).

Liveness: a stored `running` is only believed while the writing process lives. `set_status
("running")` records the pid, its start time and the host in `meta`, and the writer thread
stamps `heartbeat` with every write and after HEARTBEAT_S idle; a reader on the same host checks
the pid (and its start time: a reused pid does not count), one elsewhere the heartbeat's age. A run
killed without a word (SIGKILL, power loss) then reads `stopped` within STALE_S.

Layout (schema version 1):
    meta(key, value)                       schema_version, created, seq, write counters, pid, pid_start,
                                           host, heartbeat, rewound (a resume's truncate dropped rows)
    config(id=1, kind, json)
    status(id=1, status, updated, seq)
    steps(step, time, metrics json, seq)   log_step for the same step merges metrics
    images(image_id, lat, lon, labels json, thumb)          one row per image id
    shown(step, split, image_id, seq)      which images were recorded at which step
    rollouts(step, split, image_id, idx, text, guesses json, distance_km, reward,
             turn_distances json, turn_rewards json)
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import queue
import socket
import sqlite3
import threading
import time
import urllib.request
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from geospot.jsonutil import finite_json
from geospot.runs.liveness import HEARTBEAT_S, effective_status, process_start
from geospot.runs.writer import ImageRecord

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
STORE_FILE = "store.sqlite"
THUMBS_DIR = "thumbs"
THUMB_SIZE = 256  # longest side, px; the dashboard shows photos small

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS config (id INTEGER PRIMARY KEY CHECK (id = 1), kind TEXT NOT NULL, json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS status (id INTEGER PRIMARY KEY CHECK (id = 1), status TEXT NOT NULL,
    updated REAL NOT NULL, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS steps (step INTEGER PRIMARY KEY, time REAL NOT NULL, metrics TEXT NOT NULL,
    seq INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS steps_seq ON steps(seq);
CREATE TABLE IF NOT EXISTS images (image_id TEXT PRIMARY KEY, lat REAL NOT NULL, lon REAL NOT NULL,
    labels TEXT NOT NULL, thumb TEXT);
CREATE TABLE IF NOT EXISTS shown (step INTEGER NOT NULL, split TEXT NOT NULL, image_id TEXT NOT NULL,
    seq INTEGER NOT NULL, PRIMARY KEY (step, split, image_id));
CREATE INDEX IF NOT EXISTS shown_seq ON shown(seq);
CREATE TABLE IF NOT EXISTS rollouts (step INTEGER NOT NULL, split TEXT NOT NULL, image_id TEXT NOT NULL,
    idx INTEGER NOT NULL, text TEXT NOT NULL, guesses TEXT NOT NULL, distance_km REAL, reward REAL,
    turn_distances TEXT NOT NULL, turn_rewards TEXT NOT NULL, weights_version INTEGER,
    PRIMARY KEY (step, split, image_id, idx));
"""


def _dumps(x: Any) -> str:
    return json.dumps(finite_json(x), allow_nan=False, default=str)


def thumb_name(image_id: str) -> str:
    """File name of an image's thumbnail: a hash, so ids never become paths."""
    return hashlib.sha1(image_id.encode("utf-8")).hexdigest()[:20] + ".jpg"


_OPEN_STORES: weakref.WeakSet[RunStore] = weakref.WeakSet()


@atexit.register
def _close_open_stores() -> None:
    """A loop that dies without close() still gets its queued records written."""
    for store in list(_OPEN_STORES):
        try:
            store.close()
        except Exception:
            pass


def truncate_store(run_dir: str | Path, after_step: int) -> None:
    """Drop the steps, image records and rollouts past `after_step` (a resumed run rewinds to its
    checkpoint, as metrics.jsonl does). Synchronous: done before the run's writer opens."""
    path = Path(run_dir) / STORE_FILE
    if not path.is_file():
        return
    con = _connect_rw(path)
    try:
        con.execute("BEGIN IMMEDIATE")
        seq = int(con.execute("SELECT value FROM meta WHERE key='seq'").fetchone()[0]) + 1
        before = con.total_changes
        for table in ("steps", "shown", "rollouts"):
            con.execute(f"DELETE FROM {table} WHERE step > ?", (int(after_step),))
        con.execute("UPDATE meta SET value=? WHERE key='seq'", (str(seq),))
        if con.total_changes - before > 1:  # rows dropped: a page showing them loads again (RunReader.generation)
            con.execute("INSERT OR REPLACE INTO meta VALUES ('rewound', ?)", (str(seq),))
        con.execute("COMMIT")
    finally:
        con.close()


def _connect_rw(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA busy_timeout = 5000")
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable at checkpoints, fast appends
    return con


class RunStore:
    """RunWriter backed by `run_dir/store.sqlite` and `run_dir/thumbs/`.

    Methods never raise (except on a bad run_dir at construction) and never block for more
    than a queue put. `flush()` waits until everything queued so far is written (tests,
    checkpoints); `close()` flushes, records the counters and stops the thread."""

    def __init__(self, run_dir: str | Path, *, queue_size: int = 1024, thumb_size: int = THUMB_SIZE) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / THUMBS_DIR).mkdir(exist_ok=True)
        self.path = self.run_dir / STORE_FILE
        self.thumb_size = thumb_size
        self.failed_writes = 0
        self.dropped_writes = 0
        self._thumbs_done: set[str] = set()
        self._queue: queue.Queue[Callable[[sqlite3.Connection], None] | None] = queue.Queue(maxsize=queue_size)
        self._closed = False
        self._running = False  # stamp heartbeats while the run says it is running
        self._lock = threading.Lock()
        # The schema is created synchronously so a reader can open the store right away.
        con = _connect_rw(self.path)
        try:
            con.executescript(_SCHEMA)
            if "weights_version" not in {r[1] for r in con.execute("PRAGMA table_info(rollouts)")}:
                con.execute("ALTER TABLE rollouts ADD COLUMN weights_version INTEGER")  # a store made before async GRPO
            found = con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if found is not None and int(found[0]) != SCHEMA_VERSION:
                raise RuntimeError(f"{self.path} has run-store schema {found[0]}, this geospot writes "
                                   f"{SCHEMA_VERSION}; use a fresh run folder (or an older geospot to append to it)")
            con.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            con.execute("INSERT OR IGNORE INTO meta VALUES ('created', ?)", (str(time.time()),))
            con.execute("INSERT OR IGNORE INTO meta VALUES ('seq', '0')")
            self._thumbs_done.update(r[0] for r in con.execute("SELECT image_id FROM images WHERE thumb IS NOT NULL"))
        finally:
            con.close()
        self._thread = threading.Thread(target=self._run, name=f"runstore:{self.run_dir.name}", daemon=True)
        self._thread.start()
        _OPEN_STORES.add(self)

    # ---- RunWriter ---------------------------------------------------------------------
    def log_config(self, kind: str, config: dict[str, Any]) -> None:
        payload = _dumps(config)
        self._submit(lambda con, seq: con.execute(
            "INSERT OR REPLACE INTO config VALUES (1, ?, ?)", (str(kind), payload)))

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        step, now, new = int(step), time.time(), finite_json(dict(metrics))

        def job(con: sqlite3.Connection, seq: int) -> None:
            row = con.execute("SELECT metrics FROM steps WHERE step=?", (step,)).fetchone()
            merged = {**json.loads(row[0]), **new} if row else new
            con.execute("INSERT OR REPLACE INTO steps VALUES (?, ?, ?, ?)", (step, now, _dumps(merged), seq))

        self._submit(job)

    def log_images(self, step: int, records: list[ImageRecord], split: str = "train") -> None:
        step, split = int(step), str(split)
        # Thumbnails are made here (not on the writer thread) because the caller may reuse
        # or close its PIL images after we return; only the first sight of an id costs.
        thumbs: dict[str, Image.Image] = {}
        try:
            for rec in records:
                if rec.image is not None and rec.image_id not in self._thumbs_done and rec.image_id not in thumbs:
                    im = rec.image.convert("RGB")
                    im.thumbnail((self.thumb_size, self.thumb_size))
                    thumbs[rec.image_id] = im
        except Exception:
            self._count_failure("thumbnail")
        self._thumbs_done.update(thumbs)
        try:  # a malformed record is the caller's bug, but still must not stop training
            rows = [
                (str(rec.image_id), float(rec.lat), float(rec.lon), _dumps(rec.labels or {}),
                 [(i, str(r.text), _dumps(r.guesses),
                   finite_json(None if r.distance_km is None else float(r.distance_km)),
                   finite_json(float(r.reward)), _dumps(r.turn_distances_km), _dumps(r.turn_rewards),
                   None if r.weights_version is None else int(r.weights_version))
                  for i, r in enumerate(rec.rollouts)])
                for rec in records
            ]
        except Exception:
            self._count_failure("log_images (bad record)")
            return

        def job(con: sqlite3.Connection, seq: int) -> None:
            for image_id, im in thumbs.items():  # file first: a row never points at a missing file
                name = thumb_name(image_id)
                tmp = self.run_dir / THUMBS_DIR / (name + ".tmp")
                im.save(tmp, "JPEG", quality=85)
                tmp.replace(self.run_dir / THUMBS_DIR / name)
            for image_id, lat, lon, labels, rollouts in rows:
                con.execute(
                    "INSERT INTO images VALUES (?, ?, ?, ?, ?) ON CONFLICT(image_id) DO UPDATE SET "
                    "thumb = COALESCE(images.thumb, excluded.thumb)",
                    (image_id, lat, lon, labels, thumb_name(image_id) if image_id in thumbs else None),
                )
                con.execute("INSERT OR REPLACE INTO shown VALUES (?, ?, ?, ?)", (step, split, image_id, seq))
                con.execute("DELETE FROM rollouts WHERE step=? AND split=? AND image_id=?", (step, split, image_id))
                con.executemany(
                    "INSERT INTO rollouts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(step, split, image_id, *r) for r in rollouts],
                )

        self._submit(job)

    def set_status(self, status: str) -> None:
        status, now = str(status), time.time()
        self._running = status == "running"
        writer = {"pid": str(os.getpid()), "pid_start": str(process_start(os.getpid())),
                  "host": socket.gethostname(), "heartbeat": str(now)}

        def job(con: sqlite3.Connection, seq: int) -> None:
            con.execute("INSERT OR REPLACE INTO status VALUES (1, ?, ?, ?)", (status, now, seq))
            if status == "running":  # who to ask whether `running` is still true
                con.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(writer.items()))

        self._submit(job)

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until all jobs queued so far are applied. False on timeout."""
        done = threading.Event()
        try:
            self._queue.put(lambda con, seq: done.set(), timeout=timeout)
        except queue.Full:
            return False
        return done.wait(timeout)

    def close(self) -> None:
        if self._closed:
            return
        self.flush()
        counters = {"failed_writes": self.failed_writes, "dropped_writes": self.dropped_writes}
        self._submit(lambda con, seq: con.executemany(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)", [(k, str(v)) for k, v in counters.items()]))
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=30)
        if self.failed_writes or self.dropped_writes:
            log.warning("run store %s: %d failed and %d dropped writes", self.path, self.failed_writes,
                        self.dropped_writes)

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- writer thread -----------------------------------------------------------------
    def _submit(self, job: Callable[[sqlite3.Connection, int], Any]) -> None:
        if self._closed:
            self._count_failure("write after close")
            return
        try:
            self._queue.put_nowait(job)  # never wait: a stuck disk must not stall training
        except queue.Full:
            self.dropped_writes += 1
            if self.dropped_writes == 1 or self.dropped_writes % 100 == 0:
                log.warning("run store %s: write queue full, %d writes dropped", self.path, self.dropped_writes)

    def _count_failure(self, what: str) -> None:
        with self._lock:
            self.failed_writes = n = self.failed_writes + 1
        if n == 1 or n % 50 == 0:  # (a full disk fails every write: the first with its traceback, then a count)
            log.warning("run store %s: %s failed (%d failed writes so far: the dashboard misses those steps)",
                        self.path, what, n, exc_info=n == 1)

    def _heartbeat(self, con: sqlite3.Connection, seq: int) -> None:
        con.execute("INSERT OR REPLACE INTO meta VALUES ('heartbeat', ?)", (str(time.time()),))

    def _run(self) -> None:
        con: sqlite3.Connection | None = None
        while True:
            try:
                job = self._queue.get(timeout=HEARTBEAT_S)
            except queue.Empty:  # idle: a heartbeat says the writer still lives
                if not self._running:
                    continue
                job = self._heartbeat
            if job is None:
                break
            try:
                if con is None:
                    con = _connect_rw(self.path)
                con.execute("BEGIN IMMEDIATE")
                try:
                    seq = int(con.execute("SELECT value FROM meta WHERE key='seq'").fetchone()[0]) + 1
                    con.execute("UPDATE meta SET value=? WHERE key='seq'", (str(seq),))
                    job(con, seq)
                    if self._running and job != self._heartbeat:  # (a beat only when idle went stale when busy)
                        self._heartbeat(con, seq)
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
            except Exception:
                self._count_failure("write")
                if con is not None:  # a broken connection is reopened on the next job
                    try:
                        con.close()
                    except Exception:
                        pass
                    con = None
        if con is not None:
            con.close()


# ---- reading ---------------------------------------------------------------------------
def training_step(metrics: dict[str, Any]) -> bool:
    """A logged step that trained (the eval before training, step 0, logs only `eval/` keys; a
    metrics.jsonl line also holds its step and time)."""
    return any(not k.startswith("eval/") and k not in ("step", "time") for k in metrics)


def idle_step(metrics: dict[str, Any]) -> bool:
    """An RL step that trained nothing: no datum left once equal-reward groups were dropped
    (`datums` 0), so no gradient reached the weights."""
    return metrics.get("datums") == 0


class RunReader:
    """Read-only view of one run's store (a `mode=ro` connection per call, so it is safe
    from any thread and never holds the file open between requests)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / STORE_FILE
        if not self.path.is_file():
            raise FileNotFoundError(f"no run store at {self.path}; is {self.run_dir} a geospot run folder?")
        self._uri = "file:" + urllib.request.pathname2url(str(self.path.resolve())) + "?mode=ro"

    def connect(self) -> sqlite3.Connection:
        if not self.path.is_file():  # deleted: connecting would make its -wal / -shm again in a folder being removed
            raise FileNotFoundError(self.path)
        con = sqlite3.connect(self._uri, uri=True, timeout=5.0, check_same_thread=False)
        con.execute("PRAGMA busy_timeout = 5000")
        con.execute("PRAGMA query_only = ON")
        return con

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        con = self.connect()
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    def meta(self) -> dict[str, str]:
        return dict(self._query("SELECT key, value FROM meta"))

    def generation(self) -> str:  # which history it holds: another once started afresh or rewound by a resume
        return "{}/{}".format(*(self.meta().get(k, "") for k in ("created", "rewound")))

    def seq(self) -> int:
        return int(self._query("SELECT value FROM meta WHERE key='seq'")[0][0])

    def config(self) -> tuple[str, dict[str, Any]]:
        rows = self._query("SELECT kind, json FROM config WHERE id=1")
        return (rows[0][0], json.loads(rows[0][1])) if rows else ("", {})

    def status(self) -> dict[str, Any]:
        """The stored status, `running` turned `stopped` when its writer is gone; `heartbeat`
        is the writer's last sign of life (seconds since the epoch, or None)."""
        rows = self._query("SELECT status, updated, seq FROM status WHERE id=1")
        meta = self.meta()
        beat = float(meta["heartbeat"]) if "heartbeat" in meta else None
        if not rows:
            return {"status": "unknown", "updated": None, "seq": 0, "heartbeat": beat}
        return {"status": effective_status(rows[0][0], meta), "stored": rows[0][0], "updated": rows[0][1],
                "seq": rows[0][2], "heartbeat": beat}

    def steps(self, since_seq: int = 0) -> list[dict[str, Any]]:
        rows = self._query("SELECT step, time, metrics, seq FROM steps WHERE seq > ? ORDER BY step", (since_seq,))
        return [{"step": s, "time": t, "metrics": json.loads(m), "seq": q} for s, t, m, q in rows]

    def image_steps(self) -> list[dict[str, Any]]:
        """The (step, split) pairs that have image records, with how many images each."""
        rows = self._query("SELECT step, split, COUNT(*), MAX(seq) FROM shown GROUP BY step, split ORDER BY step")
        return [{"step": s, "split": sp, "n": n, "seq": q} for s, sp, n, q in rows]

    def images(self, step: int, split: str = "train") -> list[dict[str, Any]]:
        """Every image recorded at `step`: truth, thumbnail flag and all its rollouts."""
        con = self.connect()
        try:
            imgs = con.execute(
                "SELECT i.image_id, i.lat, i.lon, i.labels, i.thumb IS NOT NULL FROM shown s "
                "JOIN images i USING (image_id) WHERE s.step=? AND s.split=? ORDER BY s.rowid",
                (step, split)).fetchall()
            # a store written before async GRPO has no weights_version column (read-only here: no migration)
            columns = {r[1] for r in con.execute("PRAGMA table_info(rollouts)")}
            version = "weights_version" if "weights_version" in columns else "NULL"
            rolls = con.execute(
                f"SELECT image_id, idx, text, guesses, distance_km, reward, turn_distances, turn_rewards, {version} "
                "FROM rollouts WHERE step=? AND split=? ORDER BY image_id, idx", (step, split)).fetchall()
        finally:
            con.close()
        by_id: dict[str, list[dict[str, Any]]] = {}
        for image_id, idx, text, guesses, dist, reward, tdist, trew, wver in rolls:
            by_id.setdefault(image_id, []).append({
                "idx": idx, "text": text, "guesses": json.loads(guesses), "distance_km": dist, "reward": reward,
                "turn_distances_km": json.loads(tdist), "turn_rewards": json.loads(trew), "weights_version": wver})
        return [{"image_id": i, "lat": lat, "lon": lon, "labels": json.loads(lab), "has_thumb": bool(th),
                 "rollouts": by_id.get(i, [])} for i, lat, lon, lab, th in imgs]

    def thumb_path(self, image_id: str) -> Path | None:
        """The thumbnail file of an image id, only if it lies inside this run's thumbs folder."""
        rows = self._query("SELECT thumb FROM images WHERE image_id=?", (image_id,))
        if not rows or not rows[0][0]:
            return None
        root = (self.run_dir / THUMBS_DIR).resolve()
        path = (root / rows[0][0]).resolve()
        if path.parent != root or not path.is_file():
            return None
        return path

    def events_since(self, seq: int) -> list[dict[str, Any]]:
        """Everything that changed after `seq`, oldest first: step / images / status events,
        each with its own `seq` (the live stream's event id)."""
        con = self.connect()
        try:
            con.execute("BEGIN")  # one snapshot for all three tables
            steps = con.execute("SELECT step, metrics, seq FROM steps WHERE seq > ?", (seq,)).fetchall()
            shown = con.execute("SELECT step, split, COUNT(*), MAX(seq) FROM shown WHERE seq > ? "
                                "GROUP BY seq, step, split", (seq,)).fetchall()
            status = con.execute("SELECT status, seq FROM status WHERE seq > ?", (seq,)).fetchall()
            con.execute("COMMIT")
        finally:
            con.close()
        events = [{"type": "step", "seq": q, "data": {"step": s, "metrics": json.loads(m)}} for s, m, q in steps]
        events += [{"type": "images", "seq": q, "data": {"step": s, "split": sp, "n": n}} for s, sp, n, q in shown]
        events += [{"type": "status", "seq": q, "data": {"status": st}} for st, q in status]
        events.sort(key=lambda e: e["seq"])
        return events

    def summary(self) -> dict[str, Any]:
        """One run-list row: kind, status, steps, last and best metrics (one connection,
        one snapshot: the three tables agree)."""
        con = self.connect()
        try:
            con.execute("BEGIN")
            config = con.execute("SELECT kind FROM config WHERE id=1").fetchall()
            status = con.execute("SELECT status FROM status WHERE id=1").fetchall()
            meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
            rows = con.execute("SELECT step, metrics FROM steps ORDER BY step").fetchall()
            con.execute("COMMIT")
        finally:
            con.close()
        best: dict[str, float] = {}
        last: dict[str, Any] = {}
        heldout: dict[str, Any] = {}  # the latest held-out eval (`eval/` metrics), not a training batch's
        trained = 0  # rows of a training step: the eval before training (step 0) holds only `eval/` keys
        idle = 0  # RL steps that trained nothing (idle_step)
        for step, m in rows:
            last = json.loads(m)
            trained += training_step(last)
            idle += idle_step(last)
            if any(k.startswith("eval/") for k in last):
                heldout = {"step": step, **{k[5:]: v for k, v in last.items() if k.startswith("eval/")}}
            for k, v in last.items():
                if not isinstance(v, (int, float)) or isinstance(v, bool):
                    continue
                lower_better = k.endswith("_km") or "loss" in k
                if k not in best or (v < best[k] if lower_better else v > best[k]):
                    best[k] = v
        return {"kind": config[0][0] if config else "",
                "status": effective_status(status[0][0], meta) if status else "unknown",
                "stored_status": status[0][0] if status else "unknown",
                "steps": trained, "idle_steps": idle, "last_step": rows[-1][0] if rows else None, "last": last,
                "best": best, "heldout": heldout}
