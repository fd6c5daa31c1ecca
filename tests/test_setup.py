"""scripts/setup.sh's torch choice as a function of what the machine has (no network, no GPU)."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("torch_choice", ROOT / "scripts" / "torch_choice.py")
tc = importlib.util.module_from_spec(spec)
sys.modules["torch_choice"] = tc  # dataclasses look their module up there
spec.loader.exec_module(tc)


def test_linux_without_a_gpu_gets_the_cpu_index():
    c = tc.choose(has_torch=False, system="Linux", nvidia_gpu=False, cpu_index_reachable=True)
    assert c.pip_args == ("torch==2.13.0", "--index-url", "https://download.pytorch.org/whl/cpu")


def test_an_unreachable_cpu_index_falls_back_to_the_plain_requirement():
    c = tc.choose(has_torch=False, system="Linux", nvidia_gpu=False, cpu_index_reachable=False)
    assert c.pip_args == ("torch==2.13.0",) and "unreachable" in c.what


def test_a_gpu_gets_pypis_cuda_build_and_other_systems_pypis_cpu_build():
    gpu = tc.choose(has_torch=False, system="Linux", nvidia_gpu=True, cpu_index_reachable=True)
    mac = tc.choose(has_torch=False, system="Darwin", nvidia_gpu=False, cpu_index_reachable=True)
    assert gpu.pip_args == ("torch==2.13.0",) and "CUDA" in gpu.what
    assert mac.pip_args == ("torch==2.13.0",)


def test_a_torch_already_there_is_kept():
    for gpu in (False, True):
        assert tc.choose(has_torch=True, system="Linux", nvidia_gpu=gpu, cpu_index_reachable=True).pip_args == ()


def test_setup_prints_one_line_per_step():
    text = (ROOT / "scripts" / "setup.sh").read_text()
    assert all(f'step {i} "' in text for i in range(1, 5)) and "scripts/torch_choice.py" in text


def _copy_scripts(tmp_path: Path) -> Path:
    """A checkout's scripts/ and pyproject.toml in tmp_path (setup.sh works in the folder above it)."""
    import shutil

    shutil.copytree(ROOT / "scripts", tmp_path / "scripts")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def _setup(folder: Path, **env: str):
    import os
    import subprocess

    return subprocess.run(["bash", str(folder / "scripts" / "setup.sh")], capture_output=True, text=True,
                          timeout=300, cwd="/", env={**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "",
                                                     "PIP_DISABLE_PIP_VERSION_CHECK": "1", **env})


def test_a_python_older_than_311_is_said_before_anything_is_made(tmp_path):
    """pip said it at step 4, after a multi-GB torch download, and the .venv it left was reused by every
    later run (a rerun with the right Python failed the same way)."""
    old = tmp_path / "python3.10"
    old.write_text('#!/bin/sh\ncase "$1" in -V) echo "Python 3.10.13";; *) exit 1;; esac\n')
    old.chmod(0o755)
    folder = _copy_scripts(tmp_path / "clone")
    proc = _setup(folder, PYTHON=str(old))
    assert proc.returncode == 1 and not (folder / ".venv").exists()
    assert f"geospot needs Python 3.11 or newer; {old} is 3.10.13" in proc.stderr


def test_a_venv_whose_python_is_gone_is_made_again(tmp_path):
    """A .venv whose interpreter link dangles (its Python upgraded or removed) failed `python -m venv`
    on every run; it is made again (here pip has no index, so the run stops at torch, after it)."""
    folder = _copy_scripts(tmp_path / "clone")
    (folder / ".venv" / "bin").mkdir(parents=True)
    (folder / ".venv" / "bin" / "python").symlink_to("/nonexistent/python3")
    proc = _setup(folder, PYTHON=sys.executable)
    said = ".venv cannot be used (its Python is missing or older than 3.11): making it again"
    assert said in proc.stdout
    assert (folder / ".venv" / "bin" / "python").resolve().exists(), proc.stdout + proc.stderr


def test_a_venv_without_pip_keeps_what_it_holds_and_gets_pip(tmp_path):
    """uv and `venv --without-pip` make venvs without pip: such a .venv was deleted whole, with every
    package the user had put in it; now ensurepip adds pip and the rest stays."""
    import subprocess

    folder = _copy_scripts(tmp_path / "clone")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder / ".venv")], check=True, timeout=120)
    kept = folder / ".venv" / "kept.txt"
    kept.write_text("the user's")
    proc = _setup(folder, PYTHON=sys.executable)
    assert ".venv has no pip: adding it (ensurepip)" in proc.stdout, proc.stdout + proc.stderr
    assert kept.exists() and "making it again" not in proc.stdout
    pip = subprocess.run([str(folder / ".venv" / "bin" / "python"), "-m", "pip", "--version"], timeout=60)
    assert pip.returncode == 0
