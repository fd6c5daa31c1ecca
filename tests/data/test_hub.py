"""The hub source's resolution logic, on local mirrors with the hub repos' layouts."""

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from data_builders import make_samples, write_parquet

from geospot.data import load_samples
from geospot.data.hub import DirOpener, build_hub_source, normalize_shard_path
from geospot.data.pack import write_shards
from geospot.data.sources import WebDatasetSource
from geospot.data.spec import SpecError


def _unified_mirror(root):
    """sdan/geospot-unified: data/{train,test}-*.parquet with a `text` column listing shards."""
    samples = make_samples(14)
    train = write_shards(samples[:10], os.path.join(root, "shards"), shard_size=4, prefix="train")
    test = write_shards(samples[10:], os.path.join(root, "shards"), shard_size=4, prefix="test")
    rel = lambda p: os.path.relpath(p, root)
    os.makedirs(os.path.join(root, "data"))
    entries = [rel(train[0]), f"hf://datasets/sdan/geospot-unified/{rel(train[1])}",
               f"https://huggingface.co/datasets/sdan/geospot-unified/resolve/main/{rel(train[2])}"]
    pq.write_table(pa.table({"text": entries}), os.path.join(root, "data", "train-00000-of-00001.parquet"))
    with open(os.path.join(root, "data", "test.txt"), "w") as f:
        f.write("\n".join("./" + rel(p) for p in test) + "\n")
    with open(os.path.join(root, "README.md"), "w") as f:
        f.write("# mirror\n")
    return samples


def test_normalize_shard_path():
    r = "sdan/geospot-unified"
    assert normalize_shard_path("shards/a.tar", r) == "shards/a.tar"
    assert normalize_shard_path("./shards/a.tar", r) == "shards/a.tar"
    assert normalize_shard_path("hf://datasets/sdan/geospot-unified/shards/a.tar", r) == "shards/a.tar"
    assert normalize_shard_path("hf://datasets/sdan/geospot-unified@v2/shards/a.tar", r) == "shards/a.tar"
    assert (
        normalize_shard_path("https://huggingface.co/datasets/sdan/geospot-unified/resolve/main/s/a.tar", r)
        == "s/a.tar"
    )


def test_manifest_repo_resolves_and_streams_shards(tmp_path):
    samples = _unified_mirror(str(tmp_path))
    src = build_hub_source("sdan/geospot-unified", root=str(tmp_path))
    assert isinstance(src, WebDatasetSource)
    # Manifest files in path order (data/test.txt, data/train-...), shards in listed order.
    assert src.urls == ["shards/test-000000.tar", "shards/train-000000.tar", "shards/train-000001.tar",
                        "shards/train-000002.tar"]
    got = load_samples(f"hf:sdan/geospot-unified,root={tmp_path}", "all")
    assert [s.id for s in got] == [s.id for s in samples[10:] + samples[:10]]
    assert got[7].lat == pytest.approx(samples[3].lat) and got[7].labels["city"] == samples[3].labels["city"]
    train = load_samples(f"hf:sdan/geospot-unified,root={tmp_path},split=train", "all")
    assert [s.id for s in train] == [s.id for s in samples[:10]]


def test_mirror_from_environment(tmp_path, monkeypatch):
    _unified_mirror(str(tmp_path / "sdan" / "geospot-unified"))
    monkeypatch.setenv("GEOSPOT_HF_MIRROR", str(tmp_path))
    assert len(load_samples("hf:sdan/geospot-unified,split=test", "all")) == 4


def test_manifest_naming_a_missing_shard_fails_clearly(tmp_path):
    _unified_mirror(str(tmp_path))
    os.remove(tmp_path / "shards" / "train-000001.tar")
    with pytest.raises(SpecError, match="not in the repo"):
        build_hub_source("sdan/geospot-unified", root=str(tmp_path))


def test_parquet_repo_with_configurable_columns(tmp_path):
    samples = make_samples(8)
    write_parquet(str(tmp_path / "data" / "test-00000.parquet"), samples[:5], lat="lat_deg", lon="lon_deg")
    write_parquet(str(tmp_path / "data" / "train-00000.parquet"), samples[5:], lat="lat_deg", lon="lon_deg")
    got = load_samples(f"hf:osv5m/osv5m,root={tmp_path},split=test,lat=lat_deg,lon=lon_deg", "all")
    assert [s.id for s in got] == [s.id for s in samples[:5]]
    assert got[0].source == "osv5m"


def test_custom_opener_is_the_only_file_access(tmp_path):
    samples = _unified_mirror(str(tmp_path))
    opened = []

    class Counting(DirOpener):
        def open(self, path):
            opened.append(path)
            return super().open(path)

    src = build_hub_source("sdan/geospot-unified", opener=Counting(str(tmp_path)), name="unified")
    items = list(src.records(0, 0, False))
    assert len(items) == len(samples) and "shards/test-000000.tar" in opened


def test_empty_repo_says_what_it_looked_for(tmp_path):
    (tmp_path / "README.md").write_text("x")
    with pytest.raises(SpecError, match="no manifest"):
        build_hub_source("a/b", root=str(tmp_path))
    with pytest.raises(SpecError, match="owner"):
        build_hub_source("justname", root=str(tmp_path))


def test_unreachable_hub_names_the_fixes(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("GEOSPOT_HF_MIRROR", raising=False)
    with pytest.raises(SpecError, match="root=<local mirror>"):
        build_hub_source("sdan/geospot-unified")
