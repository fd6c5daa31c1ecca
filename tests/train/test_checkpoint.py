import os
import random

import numpy as np
import pytest
import torch

from geospot.runs.checkpoint import (
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    read_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)


class FakeEngine:
    """Stores one tensor; save_state writes a folder like the local engine does."""

    def __init__(self, value=0.0):
        self.w = torch.tensor([value])
        self.loaded = None

    def save_state(self, path):
        os.makedirs(path, exist_ok=True)
        torch.save(self.w, os.path.join(path, "w.pt"))
        return path

    def load_state(self, path, with_optimizer=True):
        self.w = torch.load(os.path.join(path, "w.pt"))
        self.loaded = (path, with_optimizer)


def test_save_then_load_restores_everything(tmp_path):
    eng = FakeEngine(1.5)
    torch.manual_seed(0)
    p = save_checkpoint(tmp_path, 7, eng, data_state={"cursor": np.int64(42)}, loop_state={"best": 1.0})
    assert p == tmp_path / "checkpoints" / "7" and (p / "engine" / "w.pt").exists()
    after = (random.random(), np.random.rand(), torch.rand(2).tolist())

    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    fresh = FakeEngine(0.0)
    ck = load_checkpoint(p, fresh)
    assert fresh.w.item() == 1.5 and fresh.loaded == (str(p / "engine"), True)
    assert ck.step == 7 and ck.data_state == {"cursor": 42} and ck.loop_state == {"best": 1.0}
    assert (random.random(), np.random.rand(), torch.rand(2).tolist()) == after


def test_latest_ignores_temp_and_torn_folders(tmp_path):
    eng = FakeEngine()
    for s in (2, 10, 4):
        save_checkpoint(tmp_path, s, eng)
    (tmp_path / "checkpoints" / ".tmp-12-999").mkdir()  # killed mid-save
    (tmp_path / "checkpoints" / "11").mkdir()  # no state.json
    assert [p.name for p in list_checkpoints(tmp_path)] == ["2", "4", "10"]
    assert latest_checkpoint(tmp_path).name == "10"
    assert resolve_checkpoint(tmp_path).name == "10"
    assert resolve_checkpoint(tmp_path / "checkpoints" / "4").name == "4"
    save_checkpoint(tmp_path, 12, eng)  # the next save clears the killed save's leftovers
    assert not (tmp_path / "checkpoints" / ".tmp-12-999").exists()
    assert latest_checkpoint(tmp_path).name == "12"


def test_keep_last_and_resave_same_step(tmp_path):
    eng = FakeEngine(1.0)
    for s in range(4):
        save_checkpoint(tmp_path, s, eng, keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["2", "3"]
    eng.w = torch.tensor([5.0])
    save_checkpoint(tmp_path, 3, eng, keep_last=2)
    fresh = FakeEngine()
    load_checkpoint(tmp_path / "checkpoints" / "3", fresh)
    assert fresh.w.item() == 5.0
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2", "3"]


def test_remote_engine_path_kept_verbatim(tmp_path):
    class Remote(FakeEngine):
        def save_state(self, path):
            return "tinker://run-1/weights/0003"

    save_checkpoint(tmp_path, 3, Remote())
    assert read_checkpoint(tmp_path / "checkpoints" / "3").engine_path == "tinker://run-1/weights/0003"


def test_missing_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        resolve_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"nope: no such folder$"):  # a typo'd run: not "holds no checkpoint"
        resolve_checkpoint(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="state.json"):
        read_checkpoint(tmp_path)


def test_a_damaged_checkpoint_is_one_sentence_naming_the_file_and_the_step_before(tmp_path, monkeypatch):
    """A file cut short or emptied (a full disk, a power cut): which file, and the step to go on from
    (tracebacks from safetensors / pickle / mmap before); every file is fsynced before state.json marks
    the folder whole."""
    from geospot.config import ConfigError
    from geospot.engines.config import EngineConfig
    from geospot.engines.local import LocalEngine
    from geospot.runs import checkpoint

    synced = []
    real = checkpoint._fsync_files
    monkeypatch.setattr(checkpoint, "_fsync_files", lambda folder: synced.append(folder) or real(folder))
    engine = LocalEngine(EngineConfig(model_name="tiny:qwen2_5_vl", lora_rank=4, device="cpu"))
    for step in (1, 2):
        save_checkpoint(tmp_path, step, engine)
    assert len(synced) == 2
    (tmp_path / "checkpoints" / "2" / "rng.pt").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"2/rng.pt is damaged \(it is empty\); delete .*checkpoints/2 and its run "
                                          r"goes on from step 1$"):
        load_checkpoint(tmp_path / "checkpoints" / "2", engine)
    weights = tmp_path / "checkpoints" / "1" / "engine" / "trainable.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ConfigError, match=r"trainable.safetensors is damaged \(SafetensorError: .*\); it holds "
                                          r"the only copy of these weights$"):
        load_checkpoint(tmp_path / "checkpoints" / "1", engine)
    (tmp_path / "checkpoints" / "1" / "state.json").write_text("{")
    with pytest.raises(ConfigError, match=r"1/state.json is damaged \(JSONDecodeError"):
        read_checkpoint(tmp_path / "checkpoints" / "1")
    from geospot.engines import local_state

    def denied(path):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(local_state, "load_file", denied)  # not readable by this user: no damage to delete
    with pytest.raises(PermissionError):
        engine.load_state(str(tmp_path / "checkpoints" / "2" / "engine"))


def test_a_checkpoint_the_disk_has_no_room_for_is_one_sentence_and_leaves_no_torn_folder(tmp_path, monkeypatch):
    import errno
    import shutil
    from collections import namedtuple

    from geospot.config import ConfigError
    from geospot.runs import checkpoint

    class Full(FakeEngine):
        def __init__(self, error):
            super().__init__(1.0)
            self.error = error

        def save_state(self, path):
            os.makedirs(path, exist_ok=True)
            raise self.error

    save_checkpoint(tmp_path, 1, FakeEngine(1.0))
    with pytest.raises(ConfigError, match=r"^checkpoint 2 could not be written in .* \(No space left on device; .* "
                                          r"MB free there\); free space, then resume \(its last whole checkpoint is "
                                          r"step 1\)$"):
        save_checkpoint(tmp_path, 2, Full(OSError(errno.ENOSPC, "No space left on device")))
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["1"]  # no .tmp-* left behind
    with pytest.raises(ConfigError, match=r"\(File too large; .*raise the file-size limit \(ulimit -f\)"):
        save_checkpoint(tmp_path, 2, Full(RuntimeError("I/O error: File too large (os error 27)")))  # (safetensors)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(1, 1, 1 << 20))  # torch's "unexpected pos", 1 MB left
    with pytest.raises(ConfigError, match=r"could not be written .* 1 MB free there"):
        save_checkpoint(tmp_path, 2, Full(RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos")))
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(1, 1, 1 << 40))
    with pytest.raises(RuntimeError, match="something else"):  # any other failure is its own error
        save_checkpoint(tmp_path, 2, Full(RuntimeError("something else")))
    assert checkpoint.latest_checkpoint(tmp_path).name == "1"
