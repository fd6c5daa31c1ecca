"""Shared by the torchrun tests: one command run as 1 process and as 2 gloo processes, and the
largest difference between the weights the two runs saved."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from resume_helpers import saved_tensors, subprocess_env

from geospot.runs.checkpoint import latest_checkpoint, list_checkpoints
from geospot.runs.folder import read_jsonl

ROOT = Path(__file__).resolve().parents[2]


def one_process(module: str, args: list[str]) -> list[str]:
    return [sys.executable, "-m", module, *args]


def torchrun(module: str, args: list[str], nproc: int = 2) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", module, *args]


def run_both(module: str, args: list[str], tmp: Path, timeout: int = 400, one_under_torchrun: bool = False
             ) -> tuple[Path, Path]:
    """The same run as 1 process (plain, or torchrun with 1 process) and as 2 processes (side by
    side: wall time on a shared CPU); -> their run folders."""
    one, two = tmp / "one", tmp / "two"
    first = (torchrun(module, [*args, f"log_path={one}"], nproc=1) if one_under_torchrun
             else one_process(module, [*args, f"log_path={one}"]))
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, text=True)
             for cmd in (first, torchrun(module, [*args, f"log_path={two}"]))]
    for p, name in zip(procs, ("one", "two")):
        out = p.communicate(timeout=timeout)[0]
        assert p.returncode == 0, out[-4000:]
        (tmp / f"{name}.log").write_text(out)  # what the job printed, for tests that read it
    return one, two


def weight_diff(a: Path, b: Path, prefix: str = "trainable") -> tuple[float, float]:
    """(max |a - b| over the saved weights, max |a|) of the two runs' latest checkpoints."""
    ta = {k: v for k, v in saved_tensors(latest_checkpoint(a) / "engine").items() if k.startswith(prefix)}
    tb = {k: v for k, v in saved_tensors(latest_checkpoint(b) / "engine").items() if k.startswith(prefix)}
    assert ta and ta.keys() == tb.keys()
    return (max(float((ta[k].float() - tb[k].float()).abs().max()) for k in ta),
            max(float(ta[k].float().abs().max()) for k in ta))


def failure_text(output: str, tail: int = 2500) -> str:
    """A failed job's output for an assertion message: the lines that say why a rank stopped
    (a C++ abort's "terminate called ...", a Python error), which torchrun's summary pushes far
    from the end, then the end itself."""
    why = [line for line in output.splitlines()
           if any(s in line for s in ("terminate called", "what():", "Error", "Traceback", "geospot: "))]
    return "\n".join(why[:20]) + "\n...\n" + output[-tail:]


def kill_job_inside_step(cmd: list[str], log: Path, after_step: int) -> list[int]:
    """Start a torchrun job, SIGKILL the launcher and every rank at once (a lost machine) once
    `after_step` is logged, i.e. inside the next step; -> the checkpoint steps it left."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if any(r.get("step") == after_step for r in read_jsonl(log / "metrics.jsonl")):
            break
        time.sleep(0.01)
    assert proc.poll() is None, "job finished before it could be killed: " + proc.stderr.read().decode()[-2000:]
    # torchrun starts each rank in a session of its own: kill the launcher and every descendant
    for pid in [proc.pid, *descendants(proc.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    proc.stderr.close()
    return [int(p.name) for p in list_checkpoints(log)]


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out
