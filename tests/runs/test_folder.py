"""Run-folder helpers (geospot/runs/folder.py) not covered by the loops' own tests."""

import os

from geospot.runs.folder import weights_mode_from_umask


def test_weights_files_get_the_mode_the_umask_gives_a_new_file(tmp_path):
    weights, other = tmp_path / "model.safetensors", tmp_path / "notes.txt"
    weights.write_bytes(b"x")
    weights.chmod(0o600)  # what safetensors' save_file leaves
    other.write_text("x")
    other.chmod(0o600)
    old = os.umask(0o027)
    try:
        weights_mode_from_umask(tmp_path)
    finally:
        os.umask(old)
    assert weights.stat().st_mode & 0o777 == 0o640  # 0o666 & ~0o027
    assert other.stat().st_mode & 0o777 == 0o600  # only the weights are touched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors", "notes.txt"]  # no probe left
