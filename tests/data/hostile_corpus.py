"""A corpus of hostile data inputs (issue 17): each case is a small dataset written to a
folder, the spec that reads it, the samples it must give (id -> the coordinates written by
hand into the data) and the skips by reason, or the one-sentence error it must raise.

`python tests/data/hostile_corpus.py` prints what each case gives with whatever geospot is on
PYTHONPATH (the before/now table of the issue's closing note)."""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field

from PIL import Image

REAL = "/work/shared/data/osv5m-samples"


@dataclass
class Case:
    name: str
    build: Callable[[str], str]  # folder -> spec
    samples: dict[str, tuple[float, float]] = field(default_factory=dict)  # split "all"
    skipped: dict[str, int] = field(default_factory=dict)
    error: str | None = None  # a substring of the one-sentence error (inspect and SFT)


def png(i: int, size=(40, 30)) -> bytes:
    rng = random.Random(i)
    im = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    im.paste(tuple(rng.randrange(256) for _ in range(3)), (0, 0, size[0] // 2, size[1] // 2))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def jpg(i: int) -> bytes:
    buf = io.BytesIO()
    Image.open(io.BytesIO(png(i))).save(buf, format="JPEG")
    return buf.getvalue()


GOOD = {"g1": (48.85, 2.35), "g2": (-33.87, 151.21), "g3": (35.68, 139.69)}


def _images(d: str, ids, sub="img", ext="png") -> None:
    os.makedirs(os.path.join(d, sub), exist_ok=True)
    for k, i in enumerate(ids):
        with open(os.path.join(d, sub, f"{i}.{ext}"), "wb") as f:
            f.write(png(k) if ext == "png" else jpg(k))


def _good_lines() -> list[str]:
    return [json.dumps({"id": i, "image": f"img/{i}.png", "lat": la, "lon": lo}) for i, (la, lo) in GOOD.items()]


def jsonl(bad_lines: list, *, good: bool = True, raw: bytes | None = None, name="data.jsonl",
          files: dict[str, bytes] | None = None):
    """Three good rows (g1..g3) plus the bad ones (dicts are dumped, str/bytes written as they
    are); `files` replaces image files (img/b1.png) with other bytes."""
    def build(d: str) -> str:
        _images(d, [*GOOD, "b1", "b2"])
        for rel, data in (files or {}).items():
            with open(os.path.join(d, rel), "wb") as f:
                f.write(data)
        lines = _good_lines() if good else []
        with open(os.path.join(d, name), "wb") as f:
            if raw is not None:
                f.write(raw)
            for line in [*lines, *bad_lines]:
                if not isinstance(line, bytes):
                    line = (line if isinstance(line, str) else json.dumps(line)).encode()
                f.write(line)
                f.write(b"\n")
        return os.path.join(d, name)
    return build


def bad(**kw) -> dict:
    return {"id": "b1", "image": "img/b1.png", "lat": 10.0, "lon": 20.0, **kw}


CSV_HEAD = "id,latitude,longitude,city"


def csv_folder(text: str | bytes, *, ids=tuple(GOOD), images="images", name="labels.csv"):
    def build(d: str) -> str:
        root = os.path.join(d, "osv")
        _images(root, ids, sub=images, ext="jpg")
        data = text.encode() if isinstance(text, str) else text
        with open(os.path.join(root, name), "wb") as f:
            f.write(data)
        return root
    return build


def csv_rows(sep=",", eol="\n") -> str:
    rows = [sep.join(["id", "latitude", "longitude", "city"])]
    rows += [sep.join([i, str(la), str(lo), f"city {i}"]) for i, (la, lo) in GOOD.items()]
    return eol.join(rows) + eol


def tar_shard(members: list[tuple[str, bytes]], cut: tuple[int, str] | None = None, name="shard-000.tar"):
    """`cut=(k, "header"|"data")`: the file ends 100 bytes into member k's header or data."""
    def build(d: str) -> str:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for n, data in members:
                info = tarfile.TarInfo(n)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        data = buf.getvalue()
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:  # offsets as a reader sees them
            infos = tar.getmembers()
        if cut:
            m = infos[cut[0]]
            data = data[: (m.offset if cut[1] == "header" else m.offset_data) + 100]
        os.makedirs(os.path.join(d, "wds"), exist_ok=True)
        with open(os.path.join(d, "wds", name), "wb") as f:
            f.write(data)
        return os.path.join(d, "wds")
    return build


def bomb(w: int, h: int) -> bytes:
    import struct
    import zlib

    data = bytearray(png(0, (4, 4)))
    data[16:24] = struct.pack(">II", w, h)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


def wds_good() -> list[tuple[str, bytes]]:
    out = []
    for k, (i, (la, lo)) in enumerate(GOOD.items()):
        out += [(f"{i}.jpg", jpg(k)), (f"{i}.json", json.dumps({"id": i, "lat": la, "lon": lo}).encode())]
    return out


def parquet(columns: dict, name="data.parquet"):
    def build(d: str) -> str:
        import pyarrow as pa
        import pyarrow.parquet as pq

        os.makedirs(d, exist_ok=True)
        pq.write_table(pa.table(columns), os.path.join(d, name))
        return os.path.join(d, name)
    return build


def raw_file(name: str, data: bytes):
    def build(d: str) -> str:
        os.makedirs(os.path.join(d, "x"), exist_ok=True)
        with open(os.path.join(d, "x", name), "wb") as f:
            f.write(data)
        return os.path.join(d, "x")
    return build


def symlink_loop(d: str) -> str:
    root = csv_folder(csv_rows())(d)
    os.symlink("..", os.path.join(root, "images", "loop"))  # images/loop/images/loop/...
    os.symlink(os.path.join(root, "images"), os.path.join(root, "images", "again"))
    return root


def jsonl_loop(d: str) -> str:
    """A folder of JSONL manifests with `loop -> .` inside: glob's ** would read data.jsonl
    again under loop/, loop/loop/, ... (each row once per path, as duplicates)."""
    jsonl([])(os.path.join(d, "j"))
    os.symlink(".", os.path.join(d, "j", "loop"))
    return os.path.join(d, "j")


def special_path(folder_name: str, quote: str):
    def build(d: str) -> str:
        root = csv_folder(csv_rows())(d)
        target = os.path.join(d, folder_name)
        os.rename(root, target)
        if quote == '"':
            return f'"{target}"'
        if quote == "\\":
            return "".join("\\" + c if c in ";,@=" else c for c in target)
        return target
    return build


def real_photos(d: str) -> str:
    shutil.copytree(REAL, os.path.join(d, "real"), ignore=shutil.ignore_patterns("unlabeled"))
    return os.path.join(d, "real")


def _real_labels() -> dict[str, tuple[float, float]]:
    import csv

    if not os.path.isdir(REAL):
        return {}
    with open(os.path.join(REAL, "labels.csv")) as f:
        return {r["id"]: (float(r["latitude"]), float(r["longitude"])) for r in csv.DictReader(f)}


def csv_two_files(d: str) -> str:
    """g1 is both images/2023/g1.jpg and images/2024/g1.jpg: which photo the row labels cannot be told."""
    root = csv_folder(csv_rows())(d)
    os.makedirs(os.path.join(root, "images", "2024"), exist_ok=True)
    os.replace(os.path.join(root, "images", "g1.jpg"), os.path.join(root, "images", "2024", "g1.jpg"))
    _images(os.path.join(root, "images"), ["g1"], sub="2023", ext="jpg")
    return root


def csv_with_notes(d: str) -> str:
    root = csv_folder(csv_rows())(d)
    with open(os.path.join(root, "notes.csv"), "w") as f:
        f.write("note,author\nre-shoot g2,me\n")
    return root


def parquet_split_folders(d: str) -> str:
    """A hub dataset's layout: train/0000.parquet and test/0000.parquet, no id column (ids are made
    from the file and row, so the two files' rows must not read as duplicates of each other)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = os.path.join(d, "hub")
    for k, (split, ids) in enumerate((("train", ["g1", "g2"]), ("test", ["g3"]))):
        os.makedirs(os.path.join(root, split))
        pq.write_table(pa.table({"image": [png(i + 2 * k) for i in range(len(ids))],
                                 "lat": [GOOD[i][0] for i in ids], "lon": [GOOD[i][1] for i in ids]}),
                       os.path.join(root, split, "0000.parquet"))
    return root


def only(*ids) -> dict:
    return {i: GOOD[i] for i in ids}


ALL = dict(GOOD)
LATIN1 = (CSV_HEAD + "\ng1,48.85,2.35,Paris\ng2,-33.87,151.21,São Paulo\ng3,35.68,139.69,Tokyo\n").encode("latin-1")
NO_USABLE = "has no usable record"

CASES = [
    # --- JSONL: encodings, JSON types, coordinates ------------------------------------------
    Case("jsonl invalid UTF-8 byte",
         jsonl([b'{"id": "b1", "image": "img/b1.png", "lat": 1, "lon": 2, "city": "\xff"}']),
         ALL, {"bad_encoding": 1}),
    Case('jsonl "image": 123', jsonl([bad(image=123)]), ALL, {"bad_image_field": 1}),
    Case('jsonl "image": ["a.jpg"]', jsonl([bad(image=["img/b1.png"])]), ALL, {"bad_image_field": 1}),
    Case('jsonl "image": {"path": ...}', jsonl([bad(image={"path": "img/b1.png"})]), ALL, {"bad_image_field": 1}),
    Case("jsonl NUL byte in image path", jsonl([bad(image="img/b1.png\u0000x")]), ALL, {"bad_image_field": 1}),
    Case("jsonl image path is a folder", jsonl([bad(image="img")]), ALL, {"missing_image": 1}),
    Case("jsonl lat/lon booleans", jsonl([bad(lat=True, lon=False)]), ALL, {"bad_coords": 1}),
    Case('jsonl "4_5" underscores', jsonl([bad(lat="4_5", lon="1_0")]), ALL, {"bad_coords": 1}),
    Case('jsonl hex "0x10"', jsonl([bad(lat="0x10")]), ALL, {"bad_coords": 1}),
    Case('jsonl "inf" / "-Infinity" strings',
         jsonl([bad(lat="inf"), bad(id="b2", image="img/b2.png", lon="-Infinity")]),
         ALL, {"bad_coords": 2}),
    Case("jsonl Infinity / NaN numbers", jsonl(['{"id": "b1", "image": "img/b1.png", "lat": Infinity, "lon": 1}',
                                               '{"id": "b2", "image": "img/b2.png", "lat": NaN, "lon": 1}']),
         ALL, {"nan_coords": 2}),
    Case("jsonl coordinates as lists", jsonl([bad(lat=[48.85], lon=[2.35])]), ALL, {"bad_coords": 1}),
    Case("jsonl coordinates as objects", jsonl([bad(lat={"deg": 48}, lon={"deg": 2})]), ALL, {"bad_coords": 1}),
    Case("jsonl full-width digits", jsonl([bad(lat="\uff14\uff18", lon="2")]), ALL, {"bad_coords": 1}),
    Case('jsonl "48,85" decimal comma', jsonl([bad(lat="48,85", lon="2,35")]), ALL, {"bad_coords": 1}),
    Case("jsonl numeric strings with spaces", jsonl([bad(lat=" 10.5 ", lon="2e1")]), {**ALL, "b1": (10.5, 20.0)}, {}),
    Case("jsonl lat=91 in every row", jsonl([bad(id=f"r{i}", image=f"img/r{i}.png", lat=91, lon=120)
                                             for i in range(20)],
                                            good=False, files={f"img/r{i}.png": png(i) for i in range(20)}),
         {}, {"coords_out_of_range": 20}),
    Case("jsonl latitude and longitude swapped", jsonl([], raw="\n".join(
        json.dumps({"id": i, "image": f"img/{i}.png", "lat": lo, "lon": la}) for i, (la, lo) in GOOD.items()).encode(),
        good=False), error="look swapped"),
    Case("jsonl one latitude typo among good rows", jsonl([bad(lat=123.4)]), ALL, {"coords_out_of_range": 1}),
    Case("jsonl HF imagefolder metadata (file_name)", jsonl([], raw="\n".join(
        json.dumps({"file_name": f"img/{i}.png", "latitude": la, "longitude": lo}) for i, (la, lo) in GOOD.items()
    ).encode(), good=False), {f"data.jsonl:{k}": v for k, v in enumerate(GOOD.values(), start=1)}),
    Case("jsonl coordinates nested in an object",
         jsonl([{"id": "b1", "image": "img/b1.png", "location": {"lat": 1, "lon": 2}}]), ALL, {"missing_coords": 1}),
    Case("jsonl file holding a JSON array", jsonl([], raw=("[\n" + ",\n".join(_good_lines()) + "\n]\n").encode(),
                                                  good=False), error="a JSON array, not JSON Lines"),
    Case("jsonl lat and latitude that disagree", jsonl([bad(latitude=33.0)]), ALL, {"ambiguous_coords": 1}),
    Case("jsonl lat and latitude that agree", jsonl([bad(latitude="10.0")]), {**ALL, "b1": (10.0, 20.0)}),
    Case("jsonl image as base64 text", jsonl([bad(image="/9j/" + "A" * 5000)]), ALL, {"bad_image_field": 1}),
    Case("jsonl rows that are not objects", jsonl(["[1, 2]", '"text"', "3"]), ALL, {"bad_metadata": 3}),
    Case("jsonl line cut short", jsonl(['{"id": "b1", "image": "img/b1.png", "lat"']), ALL, {"bad_metadata": 1}),
    Case("jsonl 100k nested brackets", jsonl(["[" * 100_000]), ALL, {"bad_metadata": 1}),
    Case("jsonl id of odd types", jsonl([bad(id={"x": 1}), bad(id=True, image="img/b2.png", lat=11.0)]),
         {**ALL, "data.jsonl:4": (10.0, 20.0), "data.jsonl:5": (11.0, 20.0)}, {}),
    Case("jsonl with BOM and CRLF", jsonl([], raw="\ufeff".encode() + b"\r\n".join(x.encode() for x in _good_lines())
                                       + b"\r\n", good=False), ALL, {}),
    # which row is right cannot be told: neither is used, whatever order a pass reads them in
    Case("jsonl image paths written on Windows", jsonl([bad(image="img\\b1.png")]), {**ALL, "b1": (10.0, 20.0)}),
    Case("jsonl duplicate id, other coordinates", jsonl([bad(id="g1", lat=1.0, lon=1.0)]), ALL,
         {"duplicate_id_conflict": 1}),  # (another photo: the id stays with its first row's, in every pass)
    Case("jsonl duplicate id, same coordinates", jsonl([{"id": "g2", "image": "img/g2.png", "lat": "-33.870",
                                                         "lon": 151.21}]), ALL, {"duplicate_id": 1}),
    Case("jsonl empty file", jsonl([], good=False), {}, {}),
    # --- CSV dialects and encodings -----------------------------------------------------------
    Case("csv with UTF-8 BOM", csv_folder("\ufeff" + csv_rows()), ALL),
    Case("csv separated by ;", csv_folder(csv_rows(";")), ALL),
    Case("csv separated by tabs", csv_folder(csv_rows("\t")), ALL),
    Case("labels.tsv (tabs, the .tsv name)", csv_folder(csv_rows("\t"), name="labels.tsv"), ALL),
    Case("csv with CRLF", csv_folder(csv_rows(",", "\r\n")), ALL),
    Case("csv BOM + ; + CRLF", csv_folder("\ufeff" + csv_rows(";", "\r\n")), ALL),
    Case("csv in Latin-1", csv_folder(LATIN1), only("g1", "g3"), {"bad_encoding": 1}),
    # Excel's "Unicode text": UTF-16 with a byte-order mark, tab-separated
    Case("csv in UTF-16 (Excel's Unicode text)", csv_folder(csv_rows("\t", "\r\n").encode("utf-16")), ALL),
    Case("csv empty file", csv_folder(""), {}, {"empty_file": 1}),
    Case("csv header only", csv_folder(CSV_HEAD + "\n"), {}, {}),
    Case("csv without an id column", csv_folder("name,latitude,longitude\ng1,1,2\n"), error="no id column"),
    Case("csv all images missing", csv_folder(csv_rows(), ids=("x1", "x2")), {}, {"missing_image": 3}),
    Case("csv ; with decimal commas", csv_folder(CSV_HEAD.replace(",", ";") + "\ng1;48,85;2,35;Paris\n"
                                                 "g2;-33.87;151.21;Sydney\n"), only("g1", "g2")),
    Case("csv , with a decimal comma", csv_folder(CSV_HEAD + '\ng1,"48,85",2.35,Paris\n' + "g2,-33.87,151.21,S\n"),
         only("g2"), {"bad_coords": 1}),
    Case("csv ragged rows", csv_folder(CSV_HEAD + "\ng1,48.85\ng2,-33.87,151.21,Sydney\n"), only("g2"),
         {"malformed_row": 1}),
    # a spreadsheet export that ends every row (not the header) with the separator: an empty field past the header's
    Case("csv a trailing comma on every row",
         csv_folder(CSV_HEAD + "\ng1,48.85,2.35,Paris,\ng2,-33.87,151.21,Sydney,\n"), only("g1", "g2")),
    # ... decided for the file: one row with an unquoted comma and an empty last value is no trailing comma
    Case("csv one row shifted, its last value empty", csv_folder(CSV_HEAD + "\ng1,48,85,2.35,\ng2,-33.87,151.21,\n"),
         only("g2"), {"malformed_row": 1}),
    Case("csv unquoted comma shifts a row", csv_folder(CSV_HEAD + "\ng1,1,050,2.35,Paris\n"
                                                       "g2,-33.87,151.21,Sydney\n"), only("g2"), {"malformed_row": 1}),
    Case("csv latitude and longitude swapped", csv_folder("id,longitude,latitude,city\n" + "".join(
        f"{i},{la},{lo},c\n" for i, (la, lo) in GOOD.items())),
         error="have a latitude beyond ±90° (the first: 'g2', latitude 151.21) and no longitude"),
    Case("csv without latitude columns", csv_folder("id,y,x\ng1,48.85,2.35\n"), error="no latitude column"),
    Case("csv without a header line", csv_folder("g1,48.85,2.35\ng2,-33.87,151.21\n"),
         error="its first line looks like a row, not a header"),
    Case("csv id naming two files", csv_two_files, only("g2", "g3"), {"ambiguous_image": 1}),
    Case("csv ids that are paths", csv_folder(CSV_HEAD + "\nimages/g1.jpg,48.85,2.35,P\n./images/g2.jpg,-33.87,151.21,S"
                                             "\n"), {"images/g1.jpg": GOOD["g1"], "./images/g2.jpg": GOOD["g2"]}),
    Case("csv image_path column instead of id", csv_folder("image_path,lat,lng\nimages/g1.jpg,48.85,2.35\n"),
         {"images/g1.jpg": GOOD["g1"]}),
    Case("csv ids written by pandas as floats", csv_folder(CSV_HEAD + "\n1.0,48.85,2.35,P\n", ids=("1",)),
         {"1.0": GOOD["g1"]}),
    Case("csv quoted fields with , and newlines", csv_folder(CSV_HEAD + '\ng1,48.85,2.35,"Paris, FR"\n'
                                                             'g2,-33.87,151.21,"Syd\nney"\n'), only("g1", "g2")),
    Case("csv NUL byte in a row", csv_folder(csv_rows() + "g9\x00,1,2,x\n"), ALL, {"missing_image": 1}),
    Case("csv with lat/lon and latitude/longitude columns",
         csv_folder("id,lat,lon,latitude,longitude\n" + "".join(f"{i},0,0,{a},{o}\n" for i, (a, o) in GOOD.items())),
         error="2 latitude columns"),
    # one photo, three ids, two labels: which is right cannot be told, so no row of it is used
    Case("csv naming one image three ways", csv_folder(csv_rows() + "g1.jpg,48.85,2.35,P\nimages/g1.jpg,1,1,P\n"),
         only("g2", "g3"), {"duplicate_image_conflict": 3}),
    Case("csv naming one image two ways, one label", csv_folder(csv_rows() + "images/g1.jpg,48.85,2.35,P\n"),
         ALL, {"duplicate_image": 1}),
    Case("csv ids as Windows paths", csv_folder(CSV_HEAD + "\nimages\\g1.jpg,48.85,2.35,P\n"),
         {"images\\g1.jpg": GOOD["g1"]}),
    Case("csv a spreadsheet's empty row (;;;)", csv_folder(csv_rows(";") + ";;;\n"), ALL, {}),
    Case("csv an empty row where every row ends with ;", csv_folder(csv_rows(";").replace("\n", ";\n").replace(
        "city;\n", "city\n", 1) + ";;;;\n"), ALL, {}),
    Case("csv tabs with decimal commas (UTF-16)", csv_folder("id\tlatitude\tlongitude\r\ng1\t48,85\t2,35\r\n"
                                                             .encode("utf-16")), only("g1")),
    Case("csv whose first line is a comment", csv_folder("# exported 2024\n" + csv_rows()),
         error="its first line is a comment (# exported 2024), not the header; delete it"),
    Case("csv beside a table that is not of photos", csv_with_notes, error="or give the table of your photos: data="),
    Case("csv ids in another case than the files", csv_folder(CSV_HEAD + "\nG1.JPG,48.85,2.35,P\n"),
         {"G1.JPG": GOOD["g1"]}),
    Case("csv paths relative to images/", csv_folder(CSV_HEAD + "\ntrip/g1.jpg,48.85,2.35,P\n", images="images/trip"),
         {"trip/g1.jpg": GOOD["g1"]}),
    Case("csv symlink loop in images/", symlink_loop, ALL),
    Case("jsonl folder with a symlink loop", jsonl_loop, ALL),
    # --- paths with spec syntax in them -------------------------------------------------------
    Case("path with @2, quoted", special_path("photos@2", '"'), ALL),
    Case("path with @2, unquoted (exists)", special_path("photos@2", ""), ALL),
    Case("path with , ; = escaped", special_path("a,b;c=d", "\\"), ALL),
    Case("path with ; , @ quoted", special_path("x;y,z@3", '"'), ALL),
    # --- WebDataset shards --------------------------------------------------------------------
    Case("tar of random bytes", raw_file("junk.tar", random.Random(0).randbytes(5000)), {}, {"truncated_tar": 1},
         ),
    Case("tar of zero bytes", raw_file("empty.tar", b""), {}, {"truncated_tar": 1}),
    Case("tar cut mid-header", tar_shard(wds_good(), cut=(2, "header")), only("g1"), {"truncated_tar": 1}),
    Case("tar cut mid-member", tar_shard(wds_good(), cut=(2, "data")), only("g1"), {"truncated_tar": 1}),
    Case("tar member bad-1.v2.jpg", tar_shard([*wds_good(), ("bad-1.v2.jpg", jpg(5)),
                                               ("bad-1.v2.json", b'{"lat": 1, "lon": 2}')]),
         ALL, {"dotted_member_name": 1}),
    Case("tar json that is a list", tar_shard([*wds_good(), ("b1.jpg", jpg(5)), ("b1.json", b"[1, 2]")]),
         ALL, {"bad_metadata": 1}),
    Case("tar image without json", tar_shard([*wds_good(), ("b1.jpg", jpg(5))]), ALL, {"missing_metadata": 1}),
    Case("tar.gz of garbage", raw_file("junk.tar.gz", b"\x1f\x8b" + bytes(300)), {}, {"truncated_tar": 1}),
    # --- images -------------------------------------------------------------------------------
    Case("image of random bytes", jsonl([bad()], files={"img/b1.png": random.Random(2).randbytes(700)}),
         ALL, {"decode_error": 1}),
    Case("image cut in half", jsonl([bad()], files={"img/b1.png": jpg(7)[:300]}), ALL, {"truncated_image": 1}),
    Case("image of zero bytes", jsonl([bad()], files={"img/b1.png": b""}), ALL, {"empty_image": 1}),
    Case("image 2x2 pixels", jsonl([bad()], files={"img/b1.png": png(1, (2, 2))}), ALL, {"too_small": 1}),
    Case("image 16000x60 (no model takes 256:1)", jsonl([bad()], files={"img/b1.png": png(1, (16000, 60))}), ALL,
         {"extreme_aspect": 1}),
    Case("image header claiming 30000x30000", jsonl([bad()], files={"img/b1.png": bomb(30000, 30000)}), ALL,
         {"decompression_bomb": 1}),
    # --- parquet ------------------------------------------------------------------------------
    Case("parquet integer image column", parquet({"id": ["a", "b"], "image": [1, 2], "lat": [1.0, 2.0],
                                                  "lon": [1.0, 2.0]}), {}, {"bad_image_field": 2}),
    Case("parquet string coordinates", parquet({"id": ["a", "b"], "image": [png(1), png(2)], "lat": ["4_5", "12.5"],
                                                "lon": ["1", "2"]}), {"b": (12.5, 2.0)}, {"bad_coords": 1}),
    Case("parquet file of random bytes", raw_file("junk.parquet", random.Random(1).randbytes(3000)), {},
         {"bad_parquet": 1}),
    Case("parquet without coordinate columns", parquet({"image": [png(1)], "x": [1.0]}),
         error="need image and latitude/longitude columns"),
    Case("parquet rows repeated, no id column", parquet({"image": [png(1), png(2), png(1)], "lat": [1.0, 2.0, 1.0],
                                                         "lon": [1.0, 2.0, 1.0]}),
         {"data.parquet:0": (1.0, 1.0), "data.parquet:1": (2.0, 2.0)}, {"duplicate_image": 1}),
    Case("parquet of one name in two folders (hub layout)", parquet_split_folders,
         {"train/0000.parquet:0": GOOD["g1"], "train/0000.parquet:1": GOOD["g2"], "test/0000.parquet:0": GOOD["g3"]}),
    # --- the real photos ----------------------------------------------------------------------
    Case("real OSV-5M photos (control)", real_photos, _real_labels()),
]


def outcome(case: Case, folder: str) -> dict:
    """What `geospot data inspect --json --split all` and the labels give for one case:
    {"samples": {id: [lat, lon]}, "skipped": {...}} or {"error": first line} or {"traceback": ...}."""
    import contextlib
    import traceback

    from geospot.data import load_samples
    from geospot.data.cli import main as data_main

    os.makedirs(folder, exist_ok=True)
    spec = case.build(folder)
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = data_main(["inspect", spec, "--json", "--split", "all", "--workers", "0"])
        if rc != 0 and not out.getvalue().strip():  # (no usable sample is exit 2 too, with the report)
            return {"error": err.getvalue().strip()}
        report = json.loads(out.getvalue())
        got = {s.id: [s.lat, s.lon] for s in load_samples(spec, "all", workers=0)}
        return {"samples": got, "skipped": report["skipped"], "n": report["samples"]}
    except Exception as e:  # noqa: BLE001 -- the point: record it
        return {"traceback": f"{type(e).__name__}: {str(e)[:120]}", "tb": traceback.format_exc()[-800:]}


if __name__ == "__main__":  # the before/now table: run with each geospot on PYTHONPATH
    import signal
    import sys
    import tempfile

    class Hang(BaseException):  # not an OSError: the code under test must not swallow it
        pass

    def alarm(*_):
        raise Hang("hang")

    from geospot.data.prep import one_torch_thread

    one_torch_thread()  # import torch and simplejpeg now, not under the first alarm
    signal.signal(signal.SIGALRM, alarm)
    with tempfile.TemporaryDirectory() as tmp:
        for k, case in enumerate(CASES):
            signal.alarm(20)
            try:
                r = outcome(case, os.path.join(tmp, str(k)))
            except Hang:
                r = {"hang": "more than 20 s"}
            signal.alarm(0)
            signal.alarm(8)  # what a training stream (repeat on) does with it: the old hang
            try:
                from geospot.data import open_stream

                spec = case.build(os.path.join(tmp, f"t{k}"))
                with open_stream(spec, "train", repeat=True, workers=0, val_frac=0.0, test_frac=0.0) as st:
                    next(st)
                train = "trains"
            except Hang:
                train = "HANGS"
            except Exception as e:  # noqa: BLE001
                train = f"{type(e).__name__}: {str(e)[:90]}"
            signal.alarm(0)
            if "samples" in r:
                wrong = sorted(i for i, c in r["samples"].items() if i not in case.samples
                               or abs(c[0] - case.samples[i][0]) > 1e-9 or abs(c[1] - case.samples[i][1]) > 1e-9)
                text = f"{r['n']} samples" + (f" (WRONG: {wrong[:3]})" if wrong else "") + \
                    (f"; skipped {r['skipped']}" if r["skipped"] else "")
            else:
                text = next(iter(r.items()))[0] + ": " + str(next(iter(r.values())))[:150]
            print(f"{case.name}\t{text}\t{train}")
            sys.stdout.flush()
