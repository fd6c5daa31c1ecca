"""The spec grammar as documented (spec.py's docstring = README's Data section): quoting and
escapes, stream options inside a spec, every documented example; and the stream's answers to
data with nothing usable (probe, skips in a row, the exhausted signal)."""

import os
import re
from pathlib import Path

import pytest
from data_builders import make_samples, write_jsonl

import geospot.data.spec as spec_mod
from geospot.data import SpecError, load_samples, open_stream, parse_spec
from geospot.data.types import DataError

README = Path(__file__).resolve().parents[2] / "README.md"


def _examples(text: str) -> list[str]:
    block = text.split("Examples\n--------\n", 1)[1]
    out = []
    for line in block.splitlines():
        if not line.startswith("    ") or not line.strip():
            break
        out.append(line.strip())
    return out


def test_readme_and_module_document_the_same_grammar():
    doc = spec_mod.__doc__
    readme = README.read_text()
    start = doc.index("Grammar")
    assert doc[start:].strip() in readme, "README's Data grammar block drifted from geospot/data/spec.py"


def test_every_documented_example_parses():
    examples = _examples(spec_mod.__doc__)
    assert len(examples) >= 8
    for ex in examples:
        parts = parse_spec(ex)
        assert parts and all(p.weight > 0 for p in parts), ex
    by = {ex: parse_spec(ex) for ex in examples}
    mixed = by["wds:/data/shards/unified-{000..009}.tar@3;csv:/data/osv5m,name=osv5m@1"]
    assert [(p.kind, p.target, p.weight) for p in mixed] == [("wds", "/data/shards/unified-{000..009}.tar", 3.0),
                                                            ("csv", "/data/osv5m", 1.0)]
    quoted = by["csv:\"/data/my photos@home\",name=home@2;'/data/a,b.jsonl'"]
    assert [(p.target, p.options, p.weight) for p in quoted] == [("/data/my photos@home", {"name": "home"}, 2.0),
                                                                 ("/data/a,b.jsonl", {}, 1.0)]
    assert quoted[1].kind == "jsonl"


@pytest.mark.parametrize(("text", "target", "weight"), [
    (r"jsonl:/d/a\@2.jsonl", "/d/a@2.jsonl", 1.0),
    (r"jsonl:/d/a\,b\;c\=d.jsonl@4", "/d/a,b;c=d.jsonl", 4.0),
    ('jsonl:"/d/x;y,z@3.jsonl"@0.5', "/d/x;y,z@3.jsonl", 0.5),
    ("jsonl:'/d/it\"s.jsonl'", '/d/it"s.jsonl', 1.0),
])
def test_quoting_and_escapes(text, target, weight):
    (part,) = parse_spec(text)
    assert (part.target, part.weight) == (target, weight)


def test_an_unclosed_quote_is_one_sentence():
    with pytest.raises(SpecError, match="quote is not closed"):
        parse_spec('"/d/a')


def test_an_existing_path_ending_in_at_number_is_a_path(tmp_path):
    d = tmp_path / "photos@2"
    d.mkdir()
    (part,) = parse_spec(f"jsonl:{d}")
    assert part.target == str(d) and part.weight == 1.0


def test_stream_options_inside_the_spec(tmp_path):
    """README: stream options (max_pixels, min_side, val_frac, ...) go among a part's options."""
    samples = load_samples("synthetic:n=40,size=32,val_frac=0.5,test_frac=0", "val")
    assert 10 <= len(samples) <= 30  # half of 40 by id hash (5% by default would be ~2)
    assert len(load_samples("synthetic:n=40,size=32,val_frac=0,test_frac=0", "val")) == 0
    # max_side inside the spec beats the command's own value
    s = load_samples("synthetic:n=3,size=64,max_side=16", "all", max_side=512)
    assert max(s[0].image.size) == 16
    write_jsonl(str(tmp_path / "m.jsonl"), make_samples(4))
    with open_stream(f"{tmp_path}/m.jsonl,min_side=100,repeat=false", "all") as st:
        assert list(st) == [] and st.skipped == {"too_small": 4}
    with pytest.raises(SpecError, match="set it once"):
        open_stream("synthetic:n=4,val_frac=0.1;synthetic:n=4,seed=1,val_frac=0.2")
    with pytest.raises(SpecError, match="max_pixels"):
        open_stream("synthetic:n=4,max_pixels=lots")
    with pytest.raises(SpecError, match="stream option"):
        open_stream("synthetic:n=4,bogus=1")


def test_load_samples_always_ends_even_if_the_spec_says_repeat():
    assert len(load_samples("synthetic:n=5,size=16,repeat=true", "all")) == 5


def _jsonl_all_bad(tmp_path, n=20):
    samples = make_samples(n)
    write_jsonl(str(tmp_path / "m.jsonl"), samples)
    text = (tmp_path / "m.jsonl").read_text().replace('"lat": ', '"lat": 91, "was": ')
    (tmp_path / "m.jsonl").write_text(text)
    return str(tmp_path / "m.jsonl")


def test_a_training_stream_with_nothing_usable_fails_at_open(tmp_path):
    path = _jsonl_all_bad(tmp_path)
    with pytest.raises(DataError) as e:
        open_stream(path, "train", val_frac=0, test_frac=0)
    msg = str(e.value)
    assert path in msg and "coords_out_of_range 20" in msg and "no usable record" in msg and "\n" not in msg
    # the same data, not repeating: an ordinary empty stream with the counts (data inspect)
    with open_stream(path, "all", repeat=False) as st:
        assert list(st) == [] and st.skipped == {"coords_out_of_range": 20} and st.exhausted


def test_one_bad_part_of_a_mix_is_named(tmp_path):
    path = _jsonl_all_bad(tmp_path)
    with pytest.raises(DataError, match=re.escape(repr(path))):
        open_stream(f"synthetic:n=20,size=16;{path}", "train", val_frac=0, test_frac=0)


def test_skips_in_a_row_stop_any_stream(tmp_path):
    path = _jsonl_all_bad(tmp_path, n=30)
    with open_stream(path, "all", repeat=False, max_skips_in_a_row=10) as st, \
            pytest.raises(DataError, match="10 unusable records in a row"):
        list(st)


def test_a_finite_stream_says_exhausted():
    with open_stream("synthetic:n=5,size=16", "all", repeat=False) as st:
        assert len(st.next_batch(3)) == 3 and not st.exhausted
        assert len(st.next_batch(3)) == 2 and st.exhausted
        assert st.next_batch(3) == [] and st.exhausted


def test_folder_walk_visits_each_file_once(tmp_path):
    root = tmp_path / "j"
    write_jsonl(str(root / "m.jsonl"), make_samples(3))
    os.symlink(".", root / "loop")
    os.symlink(root, root / "sub")
    assert [s.id for s in load_samples(str(root), "all")] == ["s0000", "s0001", "s0002"]
    assert len(load_samples(f"jsonl:{root}/**/*.jsonl", "all")) == 3


def test_a_named_pipe_is_refused_or_passed_over_never_waited_on(tmp_path):
    """Opening a pipe with no writer waits for ever: named as the data it is refused in one sentence,
    and inside a folder it is not read."""
    pipe = tmp_path / "fifo" / "labels.csv"
    pipe.parent.mkdir()
    os.mkfifo(pipe)
    for spec in (str(pipe), f"csv:{pipe}"):
        with pytest.raises(SpecError, match="is not a regular file or a folder"):
            load_samples(spec, "all")
    root = tmp_path / "j"
    write_jsonl(str(root / "m.jsonl"), make_samples(3))
    os.mkfifo(root / "more.jsonl")
    assert len(load_samples(str(root), "all")) == 3
    assert len(load_samples(f"jsonl:{root}/*.jsonl", "all")) == 3


def test_a_folder_of_photos_without_labels_points_to_predict():
    unlabeled = Path(__file__).resolve().parents[3] / "shared" / "data" / "osv5m-samples" / "unlabeled"
    with pytest.raises(SpecError, match=r"holds images but no labels .* geospot predict model=<model> "):
        load_samples(str(unlabeled), "all")


def test_an_empty_folder_and_a_json_beside_photos_are_said(tmp_path):
    from data_builders import make_image

    (tmp_path / "empty").mkdir()
    with pytest.raises(SpecError, match="empty: an empty folder; put the images there"):
        load_samples(str(tmp_path / "empty"), "all")
    photos = tmp_path / "photos"
    photos.mkdir()
    make_image(0).save(photos / "a.png")
    (photos / "data.json").write_text('{"image": "a.png", "lat": 1, "lon": 2}\n')
    with pytest.raises(SpecError, match=r"\(data.json is read as JSON Lines when named itself: data=.*data.json\)"):
        load_samples(str(photos), "all")
    assert len(load_samples(str(photos / "data.json"), "all")) == 1


def test_a_path_that_is_not_there_names_the_folder_it_was_read_from(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecError, match=re.escape(f"no such file or folder (a relative path is read from the "
                                                  f"current folder, {tmp_path})")):
        load_samples("csv1", "all")
    with pytest.raises(SpecError, match=r"\); a Hugging Face dataset is written hf:osv5m/osv5m$"):
        load_samples("osv5m/osv5m", "all")  # owner/name: perhaps the hub
    with pytest.raises(SpecError) as e:  # absolute, or deeper: no hub id, no cwd
        load_samples(str(tmp_path / "bench" / "yfcc"), "all")
    assert str(e.value).endswith("no such file or folder") and "hf:" not in str(e.value)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(SpecError, match=r"prefix it with its kind, e.g. csv:notes.txt \(kinds: synthetic,"):
        load_samples("notes.txt", "all")


@pytest.mark.parametrize("spec,match", [("synthetic:n=-5", "n=-5 must be >= 1"), ("synthetic:n=0", "n=0 must be >= 1"),
                                        ("synthetic:size=4", r"size=4 must be >= 8 \(px\)"),
                                        ("synthetic:difficulty=1.5", r"difficulty=1.5 must be in \[0, 1\]")])
def test_a_synthetic_world_out_of_range_is_one_sentence(spec, match):
    with pytest.raises(SpecError, match=match):
        open_stream(spec, "all", repeat=False)


def test_rebase_spec_makes_relative_local_paths_absolute_under_a_folder():
    from geospot.data.spec_paths import rebase_spec

    assert rebase_spec("photos", "/p") == "/p/photos"
    mix = "photos,max_side=224@2;synthetic:n=8;hf:a/b"
    assert rebase_spec(mix, "/p") == "/p/" + mix
    assert rebase_spec("csv:data/labels.csv,lat=y;/abs/x", "/p") == "csv:/p/data/labels.csv,lat=y;/abs/x"
    assert rebase_spec("shards/{000..003}.tar", "/p") == "/p/shards/{000..003}.tar"
    assert rebase_spec("synthetic:n=8", "/p") == "synthetic:n=8"  # nothing relative: as it is
    assert rebase_spec("'my photos',max_side=224", "/p") is None  # quoted: not rewritten
    assert rebase_spec("photos", "/a;b") is None  # a folder whose name the grammar would read as syntax


def test_same_data_is_the_same_files_however_the_spec_names_them(tmp_path, monkeypatch):
    """A folder and the one table it holds, named as a file, are one data; another table beside it is
    not; a relative spec saved in one folder and typed absolute in another reads the same files."""
    from data_builders import write_csv_folder

    from geospot.data.spec_paths import same_data

    write_csv_folder(str(tmp_path / "big"), make_samples(3))
    csv = next(p.name for p in (tmp_path / "big").iterdir() if p.suffix == ".csv")
    write_jsonl(str(tmp_path / "j" / "data.jsonl"), make_samples(2))
    monkeypatch.chdir(tmp_path)
    here = str(tmp_path)
    assert same_data("big", here, f"big/{csv}", options=False)
    assert same_data(f"big/{csv}", here, "big", options=False)
    assert same_data("j", "/", str(tmp_path / "j" / "data.jsonl"), options=False) is False  # j read from /
    assert same_data("j", here, "j/data.jsonl", options=False)
    assert not same_data("big", here, "j", options=False)
    assert same_data("big,val_frac=0.1", here, f"big/{csv}", options=False)
    assert not same_data("big,val_frac=0.1", here, f"big/{csv}")  # options count unless options=False
    # ... stream options, that is: a synthetic world's or a hub dataset's own options name other data
    assert same_data("synthetic:n=25,seed=4,max_side=64,square=true", "/", "synthetic:n=25,seed=4", options=False)
    assert not same_data("synthetic:n=4000,seed=0", "/", "synthetic:n=25,seed=4", options=False)
    assert not same_data("hf:a/b,split=test", "/", "hf:a/b,split=train", options=False)
    (tmp_path / "big" / "more.csv").write_text("id,lat,lon\n")
    assert not same_data("big", here, f"big/{csv}", options=False)  # the folder now reads two tables


def test_a_folder_of_datasets_of_several_kinds_is_refused_not_read_as_one_of_them(tmp_path):
    """Subfolders holding CSV datasets and shards: the folder was read as the shards and the CSV datasets
    dropped without a word."""
    from PIL import Image

    hub = tmp_path / "hub"  # a hub dataset's shards with a metadata table beside them: still one dataset
    (hub / "data").mkdir(parents=True)
    (hub / "data" / "train-0000.parquet").write_bytes(b"")
    (hub / "meta").mkdir()
    (hub / "meta" / "countries.csv").write_text("country,latitude,longitude\nFR,46,2\n")
    assert spec_mod.infer_kind(str(hub)) == "parquet"
    (hub / "osv").mkdir()  # ... and a CSV dataset (its table beside its images) in another subfolder: several
    (hub / "osv" / "labels.csv").write_text("id,latitude,longitude\nx,1,2\n")
    Image.new("RGB", (8, 8)).save(hub / "osv" / "x.jpg")
    with pytest.raises(SpecError, match=r"its subfolders hold datasets of several kinds \(parquet shards, and a CSV "
                                        r"beside its images\); give the folder of one dataset"):
        spec_mod.infer_kind(str(hub))


def test_a_table_or_a_list_given_as_data_is_said_as_what_it_is():
    """From Python a DataFrame or a list of samples was 'empty data spec'; it is named, with the way in."""
    for data, name in [([], "list"), ({"image": []}, "dict"), (3, "int")]:
        with pytest.raises(SpecError, match=rf"^data is a spec string .*, not a {name}; write a table to parquet"):
            load_samples(data)
    with pytest.raises(SpecError, match="^empty data spec"):
        parse_spec("  ")
