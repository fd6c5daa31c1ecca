import numpy as np
import pytest

from geospot.config import ConfigError
from geospot.data import load_samples, open_stream, split_of
from geospot.data.spec import SpecError
from geospot.data.types import DataError

SYN = "synthetic:n=300,size=32,seed=0,regions=6"


def _pixels(samples):
    return [np.asarray(s.image) for s in samples]


def test_cursor_restore_continues_identically():
    a = open_stream(SYN, seed=7, shuffle_buffer=50)
    a.next_batch(37)
    state = a.state_dict()
    want = a.next_batch(400)  # crosses an epoch boundary (train has ~270 ids)
    b = open_stream(SYN, seed=7, shuffle_buffer=50)
    b.load_state_dict(state)
    got = b.next_batch(400)
    assert [s.id for s in got] == [s.id for s in want]
    for x, y in zip(_pixels(got[:20]), _pixels(want[:20])):
        np.testing.assert_array_equal(x, y)


def test_cursor_rejects_another_spec():
    state = open_stream(SYN).state_dict()
    with pytest.raises(ValueError, match="spec"):
        open_stream("synthetic:n=10,size=32").load_state_dict(state)


def test_splits_are_disjoint_and_cover():
    ids = {sp: {s.id for s in load_samples(SYN, sp)} for sp in ("train", "val", "test")}
    assert not (ids["train"] & ids["val"]) and not (ids["train"] & ids["test"]) and not (ids["val"] & ids["test"])
    assert sum(map(len, ids.values())) == 300
    assert 0 < len(ids["val"]) < 40 and 0 < len(ids["test"]) < 40
    assert all(split_of(i) == "val" for i in ids["val"])


def test_split_fractions_configurable():
    val = load_samples(SYN, "val", val_frac=0.5, test_frac=0.1)
    assert 120 < len(val) < 180


def test_load_samples_is_stable():
    a, b = load_samples(SYN, "val", n=5), load_samples(SYN, "val", n=5)
    assert [s.id for s in a] == [s.id for s in b] and len(a) == 5
    assert a[0].labels["country"] and -90 <= a[0].lat <= 90


def test_train_stream_repeats_and_shuffles_per_seed():
    s = open_stream(SYN, seed=0)
    ids = [x.id for x in s.next_batch(600)]
    assert len(ids) == 600 and len(set(ids)) < 300  # infinite: epochs repeat the ids
    other = [x.id for x in open_stream(SYN, seed=1).next_batch(50)]
    assert other != ids[:50]


def test_finite_stream_ends():
    s = open_stream("synthetic:n=40,size=16", "all", repeat=False, workers=0)
    assert len(list(s)) == 40 and s.next_batch(3) == []


def test_bad_spec_and_options_name_the_fix():
    with pytest.raises(SpecError, match="unknown option"):
        open_stream("synthetic:n=10,colour=red")
    with pytest.raises(ConfigError, match="unknown stream option"):
        open_stream(SYN, shuffel=True)
    with pytest.raises(SpecError, match="no such file"):
        open_stream("/nope/missing")
    with pytest.raises(ConfigError, match="split"):
        open_stream(SYN, "holdout")


def test_worker_count_does_not_change_the_sequence():
    a = open_stream(SYN, seed=2, workers=0).next_batch(40)
    b = open_stream(SYN, seed=2, workers=2, prefetch=5).next_batch(40)
    assert [s.id for s in a] == [s.id for s in b]
    np.testing.assert_array_equal(np.asarray(a[-1].image), np.asarray(b[-1].image))


def test_max_side_applies_to_synthetic_too():
    (s,) = load_samples("synthetic:n=5,size=128", "all", n=1, max_side=64)
    assert s.image.size == (64, 64)


@pytest.mark.parametrize("workers", [0, 2])
def test_has_more_knows_a_finite_streams_end_past_trailing_skips(tmp_path, workers):
    """3 good rows then 2 unusable ones: after the third sample there is no more (the trailing
    skips are consumed and counted, the cursor is at the end); before it, there is."""
    import json

    from data_builders import make_samples, write_jsonl

    path = tmp_path / "rows.jsonl"
    good = make_samples(3)
    write_jsonl(str(path), good)
    with open(path, "a") as f:
        for i in range(2):  # each its own file (rows naming one photo are duplicates, another skip)
            (tmp_path / "img" / f"bad{i}.png").write_bytes((tmp_path / "img" / f"{good[0].id}.png").read_bytes())
            f.write(json.dumps({"id": f"bad{i}", "image": f"img/bad{i}.png", "lat": 91, "lon": 0}) + "\n")
    spec = f"jsonl:{path},repeat=false,shuffle=false,val_frac=0,test_frac=0"
    with open_stream(spec, "train", workers=workers) as stream:
        assert stream.has_more() and stream.position == 0
        assert len(stream.next_batch(2)) == 2 and stream.has_more()
        assert len(stream.next_batch(1)) == 1
        assert not stream.has_more() and stream.position == 5 and stream.skipped == {"coords_out_of_range": 2}
        assert stream.next_batch(2) == [] and not stream.has_more()


def test_no_usable_record_says_the_first_skip_in_its_own_words(tmp_path):
    (tmp_path / "data.jsonl").write_text('{"file": "a.png", "gps": {"lat": 1, "lon": 2}}\n' * 3)
    with pytest.raises(DataError) as e:
        open_stream(str(tmp_path / "data.jsonl"), split="train")
    said = str(e.value)
    assert "(3 read: missing_image 3; the first: " in said  # the count alone left the fix to `data inspect`
    assert "name it with image=<key>" in said
    assert "keys: ['file', 'gps']" in said


def test_a_pass_counts_labelled_records_only(tmp_path):
    """1 usable row and 7 with empty coordinates: batch_size's note said "at most 8 images"."""
    from PIL import Image

    (tmp_path / "images").mkdir()
    rows = []
    for i in range(8):
        Image.new("RGB", (40, 30), (i * 30, 9, 9)).save(tmp_path / "images" / f"p{i}.png")
        rows.append(f"p{i},{'10,20' if i == 0 else ','}\n")
    (tmp_path / "labels.csv").write_text("id,latitude,longitude\n" + "".join(rows))
    with open_stream(str(tmp_path) + ",val_frac=0,test_frac=0", split="train") as stream:
        assert {next(stream).id for _ in range(5)} == {"p0"}
        assert stream.records_per_pass == 1 and stream.skipped["missing_coords"] >= 7
