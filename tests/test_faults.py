# SPDX-License-Identifier: BSD-3-Clause
"""Training survives faults: SIGKILL at random moments then --resume, a second training into a folder in
use, a new run into a folder with an earlier run's checkpoints, a full disk while writing a checkpoint."""

import errno
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from conftest import RESOURCES, smooth_image
from napari_ppii.cli import main
from napari_ppii.config import PPIIConfig
from napari_ppii.errors import InputError
from napari_ppii.training import TrainingError, load_checkpoint, read_log, train
from napari_ppii.training.rundir import RunLock, in_use, plan_run_dir

TINY = [
    "model.base_channels=4",
    "model.levels=3",
    "data.image_size=32",
    "training.batch_size=4",
    "data.val_samples=4",
    "training.warmup_steps=2",
    "training.log_every=1",
    "synthesis.placement=anywhere",
    "training.num_threads=1",
    "data.val_fraction=0.2",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1"}


def _cmd(out, steps, *extra):
    cmd = [
        sys.executable,
        "-m",
        "napari_ppii",
        "train",
        "--quiet",
        "--data",
        str(RESOURCES / "nih-cxr"),
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    for o in TINY + [f"training.steps={steps}", "training.val_every=4", *extra]:
        cmd += ["--set", o]
    return cmd


def _all_checkpoints_load(folder):
    for p in folder.glob("*.pt"):
        load_checkpoint(p)  # raises on a torn or partial file


def _wait_log(path, event, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if path.exists() and any(r.get("event") == event for r in read_log(path)):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def pool():
    return np.stack([smooth_image((32, 32), seed=s) for s in range(6)])


def test_sigkill_at_random_moments_then_resume_ends_bit_identical(tmp_path):
    steps = 48
    ref = subprocess.run(_cmd(tmp_path / "ref", steps), env=ENV, capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr[-2000:]
    run = tmp_path / "run"
    rng = np.random.default_rng(7)
    kills = resumed = 0
    for attempt in range(12):
        cmd = _cmd(run, steps)
        if (run / "last.pt").exists():
            cmd += ["--resume", str(run / "last.pt")]
            resumed += 1
        proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if kills < 4:
            # a random moment once training has begun: before, between or during checkpoint writes
            _wait_log(run / "log.jsonl", "start")
            time.sleep(float(rng.uniform(0.0, 1.5)))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
        _, err = proc.communicate(timeout=600)
        _all_checkpoints_load(run)
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, err[-2000:]
    assert proc.returncode == 0 and kills >= 3 and resumed >= 1, (kills, resumed)
    # a kill during a write may leave a temporary file; the next run into the folder removes it
    assert not list(run.glob(".*.tmp")), "a temporary checkpoint file was left behind"
    a, b = load_checkpoint(tmp_path / "ref" / "last.pt"), load_checkpoint(run / "last.pt")
    assert a["step"] == b["step"] == steps
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["best_score"] == b["best_score"]


def test_second_training_into_a_folder_in_use_is_refused_and_the_first_untouched(tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen(_cmd(out, 100000), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_log(out / "log.jsonl", "start")
        config_before = (out / "config.yaml").read_bytes()
        second = subprocess.run(_cmd(out, 10, "seed=5"), env=ENV, capture_output=True, text=True, timeout=300)
        assert second.returncode == 2
        assert "in use by another training (pid" in second.stderr and str(first.pid) in second.stderr
        assert first.poll() is None  # still running
        assert (out / "config.yaml").read_bytes() == config_before
        starts = [r for r in read_log(out / "log.jsonl") if r.get("event") == "start"]
        assert len(starts) == 1  # the refused run wrote no log line
        assert in_use(out) and str(first.pid) in in_use(out)
    finally:
        first.send_signal(signal.SIGTERM)  # the trainer checkpoints and exits
        first.communicate(timeout=120)
    assert first.returncode == 0
    assert load_checkpoint(out / "last.pt")["step"] > 0
    assert in_use(out) is None  # the lock went with the process


def test_lock_refuses_in_process_and_dies_with_a_killed_holder(tmp_path, pool):
    out = tmp_path / "run"
    with RunLock(out):
        with pytest.raises(InputError, match="in use by another training"):
            train(PPIIConfig().with_overrides(TINY + [f"training.out_dir={out}", "training.steps=2"]), images=pool)
        assert not (out / "log.jsonl").exists() and not (out / "config.yaml").exists()
    # a holder killed by SIGKILL leaves no stale lock
    code = (
        f"from napari_ppii.training.rundir import RunLock; import time; "
        f"lock = RunLock({str(out)!r}).acquire(); time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], env=ENV)
    t0 = time.time()
    while in_use(out) is None and time.time() - t0 < 30:
        time.sleep(0.05)
    assert in_use(out) is not None
    holder.kill()
    holder.wait()
    assert in_use(out) is None
    with pytest.raises(InputError):
        with RunLock(out):
            RunLock(out).acquire()


def test_a_temporary_file_of_a_killed_write_is_removed_by_the_next_run(tmp_path, pool):
    out = tmp_path / "run"
    out.mkdir()
    stale = out / ".last.pt.k1ll3d.tmp"
    stale.write_bytes(b"half a checkpoint")  # what a SIGKILL during torch.save leaves
    other = out / "notes.tmp"
    other.write_text("not ours")
    train(
        PPIIConfig().with_overrides(TINY + [f"training.out_dir={out}", "training.steps=2", "training.val_every=2"]),
        images=pool,
    )
    assert not stale.exists() and other.exists()
    load_checkpoint(out / "last.pt")


def test_a_new_run_never_overwrites_earlier_checkpoints(tmp_path, pool, capsys):
    out = tmp_path / "run"
    cfg = PPIIConfig().with_overrides(TINY + [f"training.out_dir={out}", "training.steps=4"])
    train(cfg, images=pool)
    before = {p.name: p.read_bytes() for p in out.glob("*.pt")}
    assert before
    with pytest.raises(InputError, match="checkpoints of an earlier run"):
        train(cfg, images=pool)
    assert {p.name: p.read_bytes() for p in out.glob("*.pt")} == before
    # the CLI (and the viewer, through the same function) moves a new run to the next free folder and says so
    assert plan_run_dir(out) == (tmp_path / "run-2", plan_run_dir(out)[1])
    assert plan_run_dir(out, resume=out / "last.pt") == (out, None)
    rc = main(
        [
            "train",
            "--quiet",
            "--data",
            str(RESOURCES / "nih-cxr"),
            "--out",
            str(out),
            "--device",
            "cpu",
            *sum((["--set", o] for o in TINY + ["training.steps=2", "training.val_every=2"]), []),
        ]
    )
    assert rc == 0
    err = capsys.readouterr().err
    assert "run-2" in err and "earlier run" in err
    assert load_checkpoint(tmp_path / "run-2" / "last.pt")["step"] == 2
    assert {p.name: p.read_bytes() for p in out.glob("*.pt")} == before
    # resuming continues in the folder itself
    run2 = tmp_path / "run-2"
    rc = main(["train", "--quiet", "--resume", str(run2 / "last.pt"), "--set", "training.steps=4"])
    assert rc == 0 and load_checkpoint(run2 / "last.pt")["step"] == 4
    assert not (tmp_path / "run-3").exists()


def test_full_disk_while_writing_a_checkpoint(tmp_path, pool, monkeypatch):
    from napari_ppii import checkpoint as ck_mod

    out = tmp_path / "run"
    cfg = PPIIConfig().with_overrides(TINY + [f"training.out_dir={out}", "training.steps=12", "training.val_every=4"])
    real_save = torch.save
    calls = {"n": 0}

    def full_disk(obj, fh, *a, **k):
        calls["n"] += 1
        if calls["n"] >= 3:  # last.pt and best.pt at step 4 go through; the step-8 write hits a full disk
            fh.write(b"\0" * 1000)  # part of the file was written
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, fh, *a, **k)

    monkeypatch.setattr(ck_mod.torch, "save", full_disk)
    with pytest.raises(TrainingError, match=r"could not write the checkpoint .*last.pt at step 8 \(No space left"):
        train(cfg, images=pool)
    monkeypatch.setattr(ck_mod.torch, "save", real_save)
    assert load_checkpoint(out / "last.pt")["step"] == 4  # the previous checkpoint, intact
    assert load_checkpoint(out / "best.pt")["step"] == 4
    _all_checkpoints_load(out)
    assert read_log(out / "log.jsonl")[-1]["event"] == "error"
    # and the run resumes from it once there is room again
    res = train(cfg, resume=out / "last.pt", images=pool)
    assert res.step == 12


def test_cli_paths_are_strings_not_yaml(tmp_path):
    cfg = PPIIConfig().with_values({"data.train": "2024", "training.out_dir": tmp_path / "on"})
    assert cfg.data.train == "2024" and cfg.training.out_dir == str(tmp_path / "on")
    # through the CLI: a folder named 2024 is a path (it does not exist here: a clean file error)
    os.chdir(tmp_path)
    assert main(["train", "--quiet", "--data", "2024", "--out", "yes", "--set", "training.steps=1"]) == 2


def test_a_training_killed_by_a_signal_says_so(tmp_path):
    from napari_ppii.training.process import TrainingProcess

    cfg = PPIIConfig().with_overrides(
        TINY
        + [
            f"training.out_dir={tmp_path / 'run'}",
            "training.steps=100000",
            f"data.train={RESOURCES / 'nih-cxr'}",
            "training.device=cpu",
        ]
    )
    proc = TrainingProcess(cfg)
    proc.start()
    try:
        assert _wait_log(tmp_path / "run" / "log.jsonl", "start")
        os.killpg(proc.proc.pid, signal.SIGKILL)  # as the out-of-memory killer would
        proc.proc.wait(timeout=30)
    finally:
        proc.stop(grace=1)
    text = proc.failure_text()
    assert "killed by SIGKILL" in text and "out-of-memory" in text
