# SPDX-License-Identifier: BSD-3-Clause
"""Backbones, trainer, checkpoints, DDP, prediction (CPU, tiny sizes)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import RESOURCES, smooth_image
from napari_ppii.config import PPIIConfig
from napari_ppii.errors import InputError
from napari_ppii.models import PHiSeg, UNet, build_model
from napari_ppii.training import TrainingError, load_checkpoint, read_log, save_checkpoint, train
from napari_ppii.training.data import augment, normal_slices, validation_set
from napari_ppii.training.losses import segmentation_loss

TINY = [
    "model.base_channels=4",
    "model.levels=3",
    "data.image_size=32",
    "training.batch_size=4",
    "data.val_samples=4",
    "training.warmup_steps=2",
    "training.log_every=1",
    "synthesis.placement=anywhere",
]


def tiny_cfg(tmp_path, *extra):
    return PPIIConfig().with_overrides(TINY + [f"training.out_dir={tmp_path}"] + list(extra))


@pytest.fixture(scope="module")
def pool():
    return np.stack([smooth_image((32, 32), seed=s) for s in range(6)])


# ------------------------------------------------------------------------------------------------
# models
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backbone", ["unet", "mc_unet", "phiseg"])
def test_each_backbone_overfits_a_tiny_synthetic_task(backbone, pool):
    torch.manual_seed(0)
    cfg = PPIIConfig().with_overrides(["model.base_channels=8", "model.levels=3", f"model.backbone={backbone}"])
    model = build_model(cfg.model)
    from napari_ppii.synthesis import PPII

    res = PPII().batch(pool[:4].astype(np.float64), rng=0)
    x = torch.tensor(np.stack([r.image for r in res]))[:, None]
    y = torch.tensor(np.stack([r.label for r in res]))[:, None]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    errors = []  # squared error of the prediction: BCE with soft labels has a non-zero floor, this has none
    for _ in range(120):
        model.train()
        logits, aux = model.training_forward(x, y)
        loss = segmentation_loss(logits, y) + aux
        opt.zero_grad()
        loss.backward()
        opt.step()
        errors.append(float(((torch.sigmoid(logits.detach()) - y) ** 2).mean()))
    # the stated factor: the training task's error falls at least five-fold
    assert np.mean(errors[-5:]) < 0.2 * np.mean(errors[:3]), (errors[:3], errors[-5:])


def test_predict_interface_mean_and_variance(pool):
    x = torch.tensor(pool[:2])[:, None]
    torch.manual_seed(0)
    unet = UNet(base_channels=4, levels=3)
    m, v = unet.predict(x, samples=5)
    assert m.shape == x.shape and torch.all(v == 0) and 0 <= float(m.min()) and float(m.max()) <= 1
    mc = build_model(
        PPIIConfig()
        .with_overrides(["model.backbone=mc_unet", "model.base_channels=4", "model.levels=3", "model.dropout=0.3"])
        .model
    )
    mc.eval()
    _, vmc = mc.predict(x, samples=6)
    assert float(vmc.mean()) > 0
    # predict leaves the mode as it was: eval, dropout off again -> deterministic forward
    assert not mc.training and not any(m.training for m in mc.modules())
    assert torch.equal(mc(x), mc(x))


def test_phiseg_samples_differ_and_variance_positive(pool):
    torch.manual_seed(0)
    model = PHiSeg(base_channels=4, latent_levels=3, latent_channels=2)
    assert model.levels == 5  # two more resolution levels than latent levels
    x = torch.tensor(pool[:2])[:, None]
    model.eval()
    a, b = model(x), model(x)
    assert not torch.allclose(a, b)
    mean, var = model.predict(x, samples=8)
    assert float(var.min()) >= 0 and float(var.mean()) > 0
    logits, kl = model.training_forward(x, torch.zeros_like(x))
    assert logits.shape == x.shape and float(kl) >= 0


@pytest.mark.parametrize("backbone", ["unet", "phiseg"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fast_layers_compute_the_same_model(backbone, channels_last):
    """``set_fast_layers``: the up-convolutions as a 1x1 convolution + rearrangement, the head as a matrix
    product and the decoder's concatenations convolved part by part give the standard layers' outputs and
    gradients (fp32, to float rounding), on the same parameters and state dict; under bf16 autocast the two
    agree to bf16 rounding; switching back restores the standard kernels exactly."""
    from napari_ppii.models import set_fast_layers

    torch.manual_seed(3)
    make = (
        (lambda: UNet(base_channels=4, levels=4))
        if backbone == "unet"
        else (lambda: PHiSeg(base_channels=4, latent_levels=3))
    )
    model = make()
    keys = list(model.state_dict())
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    x = torch.rand(2, 1, 40, 48).contiguous(memory_format=fmt)

    def run(fast):
        set_fast_layers(model, fast)
        model.zero_grad(set_to_none=True)
        torch.manual_seed(7)  # PHiSeg samples its latents
        y = model(x)
        y.square().mean().backward()
        return y.detach(), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    y0, g0 = run(False)
    # U-Net, 4 levels: 3 up-convolutions + the head + 7 convolution blocks; PHiSeg: 5 + its 23 blocks
    assert set_fast_layers(model, True) == (11 if backbone == "unet" else 28)
    y1, g1 = run(True)
    assert y1.shape == y0.shape and not torch.equal(y0, torch.zeros_like(y0))
    torch.testing.assert_close(y1, y0, rtol=1e-4, atol=1e-5)
    assert g1.keys() == g0.keys() and any("upconv" in k for k in g0) and any("head" in k for k in g0)
    for k in g0:
        torch.testing.assert_close(g1[k], g0[k], rtol=1e-3, atol=1e-5)
    assert list(model.state_dict()) == keys  # checkpoints load either way
    y2, _ = run(False)
    assert torch.equal(y2, y0)
    bf16 = []
    for fast in (False, True):
        set_fast_layers(model, fast)
        torch.manual_seed(7)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16.append(model(x).float().detach())
    assert float((bf16[1] - bf16[0]).abs().max()) < 0.05 * float(bf16[0].abs().max())


def test_fast_layers_leave_no_concatenation_in_the_decoder():
    """With the fast layers the U-Net's decoder convolves skip and up-sampled features part by part: no
    channel concatenation is made (the copy the part-by-part form exists to avoid); without them there is
    one per decoder level."""
    from torch.overrides import TorchFunctionMode

    from napari_ppii.models import set_fast_layers

    class CountCat(TorchFunctionMode):
        n = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func in (torch.cat, torch.concat):
                CountCat.n += 1
            return func(*args, **(kwargs or {}))

    model = UNet(base_channels=4, levels=4)
    x = torch.rand(1, 1, 32, 32)
    for fast, expected in ((False, 3), (True, 0)):
        set_fast_layers(model, fast)
        CountCat.n = 0
        with CountCat():
            model(x)
        assert CountCat.n == expected


def test_odd_input_sizes_are_padded_and_cropped():
    m = UNet(base_channels=4, levels=4)
    assert m(torch.zeros(1, 1, 37, 50)).shape == (1, 1, 37, 50)


# ------------------------------------------------------------------------------------------------
# trainer
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backbone", ["unet", "mc_unet", "phiseg"])
def test_resume_continues_exactly(tmp_path, pool, backbone):
    n = 6
    full = tiny_cfg(
        tmp_path / "full", f"training.steps={2 * n}", f"training.val_every={n}", f"model.backbone={backbone}"
    )
    train(full, images=pool)
    half = tiny_cfg(
        tmp_path / "half", f"training.steps={2 * n}", f"training.val_every={n}", f"model.backbone={backbone}"
    )
    train(half, images=pool, stop_after=n)
    assert load_checkpoint(tmp_path / "half" / "last.pt")["step"] == n
    train(half, resume=tmp_path / "half" / "last.pt", images=pool)
    a = load_checkpoint(tmp_path / "full" / "last.pt")
    b = load_checkpoint(tmp_path / "half" / "last.pt")
    assert a["step"] == b["step"] == 2 * n
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    # and the interrupted run differs from a run with another seed (the check can fail)
    other = tiny_cfg(
        tmp_path / "other", f"training.steps={2 * n}", f"training.val_every={n}", "seed=1", f"model.backbone={backbone}"
    )
    train(other, images=pool)
    c = load_checkpoint(tmp_path / "other" / "last.pt")
    assert any(not torch.equal(a["model"][k], c["model"][k]) for k in a["model"] if a["model"][k].is_floating_point())


def test_a_rerun_of_the_same_command_gives_the_same_run_bit_for_bit(tmp_path, pool):
    # README, "Reproducing a figure": the same configuration, seed, thread count and library versions on the
    # same CPU give the same weights and the same log (losses, validation), not merely similar ones
    extra = ["training.steps=8", "training.val_every=4", "training.num_threads=1"]
    for d in ("a", "b"):
        train(tiny_cfg(tmp_path / d, *extra), images=pool)
    a, b = (load_checkpoint(tmp_path / d / "last.pt") for d in ("a", "b"))
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    drop = {"time", "images_per_s", "eta_s", "path"}
    recs = {
        d: [{k: v for k, v in r.items() if k not in drop} for r in read_log(tmp_path / d / "log.jsonl")] for d in "ab"
    }
    assert [r["event"] for r in recs["a"]].count("val") == 2
    assert recs["a"] == recs["b"]
    start = recs["a"][0]
    assert start["event"] == "start" and start["seed"] == 0 and start["threads"] == 1
    assert start["torch"] == torch.__version__ and start["numpy"] == np.__version__


_RETAIN_RUN = """
import sys, numpy as np
from napari_ppii.config import PPIIConfig
from napari_ppii.training import train
out, retain = sys.argv[1], sys.argv[2]
over = %r + ["training.out_dir=" + out, "training.retain_memory=" + retain]
train(PPIIConfig().with_overrides(over), images=np.load(out + ".npy"))
"""


def test_retaining_freed_memory_changes_no_result(tmp_path):
    # training.retain_memory sets the C library's allocator for the whole process (it cannot be undone), so
    # each run has a process of its own; the bf16 path at a size whose activations exceed glibc's default
    # mmap threshold (128 KiB), so the two runs really take their memory from different places
    pool = np.stack([smooth_image((64, 64), seed=s) for s in range(6)])
    over = TINY + [
        "data.image_size=64",
        "training.batch_size=8",
        "training.steps=6",
        "training.val_every=3",
        "training.num_threads=1",
    ]
    env = {**os.environ, "PPII_CPU_BF16": "1"}
    for name, retain in (("system", "false"), ("retain", "true")):
        np.save(tmp_path / f"{name}.npy", pool)
        r = subprocess.run(
            [sys.executable, "-c", _RETAIN_RUN % (over,), str(tmp_path / name), retain],
            env=env,
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stderr[-2000:]
    a, b = (load_checkpoint(tmp_path / d / "last.pt") for d in ("system", "retain"))
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    starts = {d: read_log(tmp_path / d / "log.jsonl")[0] for d in ("system", "retain")}
    assert starts["system"]["allocator"] == "system"
    import platform

    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert starts["retain"]["allocator"].startswith("glibc") == glibc


def test_retaining_freed_memory_is_left_alone_off_glibc(monkeypatch):
    import platform

    from napari_ppii.device import retain_freed_memory

    monkeypatch.setattr(platform, "libc_ver", lambda *a, **k: ("musl", "1.2"))
    assert retain_freed_memory() is None


def test_log_and_checkpoints(tmp_path, pool):
    cfg = tiny_cfg(tmp_path, "training.steps=8", "training.val_every=4")
    res = train(cfg, images=pool)
    recs = read_log(tmp_path / "log.jsonl")
    steps = [r for r in recs if r["event"] == "step"]
    vals = [r for r in recs if r["event"] == "val"]
    assert [r["step"] for r in steps] == list(range(1, 9))
    assert all({"loss", "lr", "images_per_s", "eta_s"} <= set(r) for r in steps)
    assert [r["step"] for r in vals] == [4, 8] and all(0 <= r["val_dice"] <= 1 for r in vals)
    ck = load_checkpoint(res.last_checkpoint)
    assert ck["step"] == 8 and ck["config"]["training"]["steps"] == 8 and "numpy" in ck["rng"]
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["val_dice"] == max(r["val_dice"] for r in vals)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temp files


def test_keep_every_keeps_step_checkpoints(tmp_path, pool):
    cfg = tiny_cfg(tmp_path, "training.steps=6", "training.val_every=3", "training.keep_every=2")
    res = train(cfg, images=pool)
    kept = sorted(p.name for p in tmp_path.glob("step_*.pt"))
    assert kept == ["step_0000002.pt", "step_0000004.pt", "step_0000006.pt"]
    six = load_checkpoint(tmp_path / "step_0000006.pt")
    last = load_checkpoint(res.last_checkpoint)
    assert six["step"] == 6 and all(torch.equal(six["model"][k], last["model"][k]) for k in last["model"])
    two = load_checkpoint(tmp_path / "step_0000002.pt")
    assert two["step"] == 2 and not all(torch.equal(two["model"][k], last["model"][k]) for k in last["model"])
    assert [r["step"] for r in read_log(tmp_path / "log.jsonl") if r["event"] == "kept"] == [2, 4, 6]


def test_stop_between_validations_resumes_exactly(tmp_path, pool):
    full = tiny_cfg(tmp_path / "a", "training.steps=7", "training.val_every=3")
    train(full, images=pool)
    b = full.with_overrides([f"training.out_dir={tmp_path / 'b'}"])
    train(b, images=pool, stop_after=4)  # between the validations at 3 and 6
    assert load_checkpoint(tmp_path / "b" / "last.pt")["val_dice"] is None
    assert read_log(tmp_path / "b" / "log.jsonl")[-1]["event"] == "stopped"
    train(b, resume=tmp_path / "b" / "last.pt", images=pool)
    x, y = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    assert all(torch.equal(x["model"][k], y["model"][k]) for k in x["model"])


def test_prefetch_draws_the_same_batches_and_resumes_exactly(tmp_path, pool):
    """training.prefetch draws the next batch in a background thread: the same weights as drawing it inside
    the step, also when stopped with a draw pending (at a validation and between two) and resumed."""
    plain = tiny_cfg(tmp_path / "plain", "training.steps=9", "training.val_every=3", "training.prefetch=false")
    train(plain, images=pool)
    ref = load_checkpoint(tmp_path / "plain" / "last.pt")["model"]
    pre = plain.with_overrides([f"training.out_dir={tmp_path / 'pre'}", "training.prefetch=true"])
    train(pre, images=pool, stop_after=3)  # stops at a validation: last.pt written while step 4's batch was drawn
    train(pre, resume=tmp_path / "pre" / "last.pt", images=pool, stop_after=5)  # between validations
    assert load_checkpoint(tmp_path / "pre" / "last.pt")["step"] == 5
    train(pre, resume=tmp_path / "pre" / "last.pt", images=pool)
    got = load_checkpoint(tmp_path / "pre" / "last.pt")
    assert got["step"] == 9
    assert all(torch.equal(ref[k], got["model"][k]) for k in ref)
    starts = lambda d: [r["prefetch"] for r in read_log(tmp_path / d / "log.jsonl") if r["event"] == "start"]  # noqa: E731
    assert starts("pre") == [True, True, True] and starts("plain") == [False]  # the start record says which
    # a checkpoint that kept the RNG state after the pending draw would skip a batch: the check can fail
    other = plain.with_overrides([f"training.out_dir={tmp_path / 'other'}", "seed=3"])
    train(other, images=pool)
    oth = load_checkpoint(tmp_path / "other" / "last.pt")["model"]
    assert any(not torch.equal(ref[k], oth[k]) for k in ref if ref[k].is_floating_point())


def test_training_reduces_loss(tmp_path):
    pool = np.stack([smooth_image((48, 48), seed=s) for s in range(6)])
    cfg = tiny_cfg(
        tmp_path,
        "data.image_size=48",
        "training.batch_size=8",
        "training.steps=120",
        "training.val_every=120",
        "training.lr=3e-3",
        "model.base_channels=8",
    )
    train(cfg, images=pool)
    losses = [r["loss"] for r in read_log(tmp_path / "log.jsonl") if r["event"] == "step"]
    # BCE on soft labels has a floor well above zero: a 15% drop in 120 steps is learning
    assert np.mean(losses[-10:]) < 0.85 * np.mean(losses[:5])


def test_malicious_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"format": "napari-ppii-checkpoint", "model": {}, "payload": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(InputError, match="refused"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    save_checkpoint({"x": 1}, tmp_path / "ok.pt")
    assert load_checkpoint(tmp_path / "ok.pt")["x"] == 1
    torch.save({"model": {}}, tmp_path / "foreign.pt")
    with pytest.raises(InputError, match="not a napari-ppii checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_out_of_memory_stops_with_advice_and_keeps_checkpoint(tmp_path, pool, monkeypatch):
    from napari_ppii.training import data as data_mod

    cfg = tiny_cfg(tmp_path, "training.steps=10", "training.val_every=3")
    orig = data_mod.SyntheticBatches.draw
    calls = {"n": 0}

    def draw(self, rng, bs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return orig(self, rng, bs)

    monkeypatch.setattr(data_mod.SyntheticBatches, "draw", draw)
    with pytest.raises(TrainingError, match="lower training.batch_size"):
        train(cfg, images=pool)
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 3
    assert read_log(tmp_path / "log.jsonl")[-1]["event"] == "error"


@pytest.mark.parametrize(
    "override,match",
    [
        ("training.device=gpu", "device"),
        ("training.lr_min=1", "lr_min"),
        ("model.backbone=resnet", "backbone"),
        ("training.batch_size=0", "batch_size"),
        ("data.image_size=8", "image_size"),
        ("model.dropout=1.5", "dropout"),
    ],
)
def test_config_validation(override, match):
    with pytest.raises(InputError, match=match):
        PPIIConfig().with_overrides([override])


def test_cuda_requested_without_gpu(tmp_path, pool):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(InputError, match="no CUDA device"):
        train(tiny_cfg(tmp_path, "training.device=cuda"), images=pool)


def test_ddp_two_process_gloo(tmp_path):
    """torchrun --nproc_per_node 2 on the CPU: gloo, one log and one set of checkpoints."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "napari_ppii.cli",
        "train",
        "--quiet",
        "--data",
        str(RESOURCES / "nih-cxr"),
        "--out",
        str(tmp_path),
        "--device",
        "cpu",
    ]
    for o in TINY + ["training.steps=4", "training.val_every=2"]:
        cmd += ["--set", o]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    recs = read_log(tmp_path / "log.jsonl")
    starts = [x for x in recs if x["event"] == "start"]
    assert len(starts) == 1 and starts[0]["world_size"] == 2
    assert [x["step"] for x in recs if x["event"] == "step"] == [1, 2, 3, 4]
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 4


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------
def test_csv_training_rows_and_folder(tmp_path):
    cfg = PPIIConfig().with_overrides([f"data.train={RESOURCES / 'nih-cxr' / 'annotations.csv'}", "data.image_size=64"])
    from napari_ppii.training.data import load_normal_images

    imgs = load_normal_images(cfg)
    assert imgs.shape == (4, 64, 64)  # the four normals with split=train
    assert imgs.min() >= 0 and imgs.max() <= 1
    folder = load_normal_images(cfg.with_overrides([f"data.train={RESOURCES / 'nih-cxr'}"]))
    assert folder.shape == (6, 64, 64)
    with pytest.raises(InputError, match="not found"):
        load_normal_images(cfg.with_overrides([f"data.train={tmp_path / 'none'}"]))


def test_ct_training_slices_follow_the_lesion_margin(tmp_path):
    from napari_ppii.io import Scan, write_array
    from napari_ppii.training.data import load_normal_images

    vol = (smooth_image((30, 40, 40), seed=3) * 1400 - 1200).astype(np.float32)
    p = write_array(vol, tmp_path / "ct", like=Scan(vol, (2.5, 0.8, 0.8), (0, 0, 0), np.eye(3), "CT"), fmt="nifti")
    (tmp_path / "boxes.csv").write_text("image,label,x0,y0,x1,y1,z0,z1\nct,nodule,5,5,10,10,12,14\n")
    cfg = PPIIConfig().with_overrides([f"data.train={p}", f"data.boxes={tmp_path / 'boxes.csv'}", "data.image_size=32"])
    imgs = load_normal_images(cfg)
    assert imgs.shape == (30 - (14 + 5 - (12 - 5) + 1), 32, 32)  # slices 7..19 are left out
    assert load_normal_images(cfg.with_overrides(["data.boxes=null"])).shape[0] == 30


def test_lesion_margin_rule():
    keep = normal_slices(30, [(10, 12)], margin=5)
    assert 4 in keep and 5 not in keep and 17 not in keep and 18 in keep
    assert normal_slices(5, [], 5) == [0, 1, 2, 3, 4]


def test_augmentations(pool):
    from napari_ppii.config import AugmentConfig

    x = torch.tensor(pool[:3])
    same = augment(x, AugmentConfig(), np.random.default_rng(0))
    assert torch.equal(same, x)
    cfg = AugmentConfig(rotation=True, scaling=True, elastic=True)
    a = augment(x, cfg, np.random.default_rng(0))
    b = augment(x, cfg, np.random.default_rng(0))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.allclose(a, x)


def test_validation_set_is_fixed(pool):
    cfg = PPIIConfig().with_overrides(["data.val_samples=5", "synthesis.placement=anywhere"])
    a, b = validation_set(pool, cfg), validation_set(pool, cfg)
    assert a.image.shape == (5, 1, 32, 32) and torch.equal(a.image, b.image) and float(a.label.max()) > 0


# ------------------------------------------------------------------------------------------------
# predict
# ------------------------------------------------------------------------------------------------
def test_predict_cli_2d_and_3d_keep_geometry(tmp_path, pool):
    from napari_ppii.cli import main
    from napari_ppii.io import Scan, read_scan, write_array

    cfg = tiny_cfg(tmp_path / "run", "training.steps=2", "training.val_every=2", "model.backbone=mc_unet")
    train(cfg, images=pool)
    ck = tmp_path / "run" / "last.pt"
    assert (
        main(
            [
                "predict",
                str(RESOURCES / "nih-cxr" / "00013751_003.png"),
                "--checkpoint",
                str(ck),
                "--out",
                str(tmp_path / "p2"),
                "--samples",
                "3",
            ]
        )
        == 0
    )
    m = read_scan(tmp_path / "p2" / "00013751_003_anomaly_map.tif")
    assert m.shape == (512, 512) and 0 <= m.array.min() and m.array.max() <= 1
    assert read_scan(tmp_path / "p2" / "00013751_003_variance.tif").array.max() > 0
    meta = json.loads((tmp_path / "p2" / "predict.json").read_text())
    assert meta["predicted"] == 1 and meta["backbone"] == "mc_unet"
    assert "samples" in (tmp_path / "p2" / "index.csv").read_text()
    vol = (smooth_image((6, 40, 36), seed=1) * 1000 - 900).astype(np.float32)
    scan = Scan(vol, (2.5, 0.8, 0.7), (-10.0, 3.0, 4.0), np.eye(3), "CT")
    p = write_array(vol, tmp_path / "ct", like=scan, fmt="nifti")
    assert main(["predict", str(p), "--checkpoint", str(ck), "--out", str(tmp_path / "p3")]) == 0
    out = read_scan(tmp_path / "p3" / "ct_anomaly_map.nii.gz")
    assert out.shape == (6, 40, 36)
    assert out.spacing == pytest.approx((2.5, 0.8, 0.7)) and out.origin == pytest.approx((-10.0, 3.0, 4.0))


# ------------------------------------------------------------------------------------------------
# placement masks in training, checkpoint selection
# ------------------------------------------------------------------------------------------------
def test_training_batches_keep_anomalies_on_the_masks(pool):
    from napari_ppii.training.data import SyntheticBatches

    masks = np.zeros(pool.shape, bool)
    masks[:, 4:20, 6:22] = True
    cfg = PPIIConfig().with_overrides(TINY + ["synthesis.placement=mask", "synthesis.patch_size=[0.2, 0.3]"])
    b = SyntheticBatches(pool, cfg, torch.device("cpu"), masks=masks).draw(np.random.default_rng(0), 6)
    lab = b.label[:, 0].numpy()
    assert lab.max() > 0
    assert np.all(lab[:, ~masks[0]] == 0)
    # with rotation the masks turn with the images: still nothing off the (turned) mask's bounding region
    cfg_r = cfg.with_overrides(["data.augment.rotation=true", "data.augment.rotation_degrees=30"])
    b = SyntheticBatches(pool, cfg_r, torch.device("cpu"), masks=masks).draw(np.random.default_rng(1), 6)
    far = np.ones(pool.shape[1:], bool)
    far[0:26, 0:28] = False
    assert np.all(b.label[:, 0].numpy()[:, far] == 0)


def test_min_mask_share_leaves_out_images_without_room_for_anomalies(tmp_path):
    from napari_ppii.training.loop import Trainer

    pool = np.stack([smooth_image((32, 32), seed=s) for s in range(10)])
    masks = np.zeros(pool.shape, bool)
    masks[:6, 4:20, 6:22] = True  # 25 % of the image: six "slices through the lungs"
    masks[6:8, 10:12, 10:12] = True  # 0.4 %: two slices at the lungs' tip; two with no lung at all
    pool[6:] += 10.0  # mark the images without room, to see which ones training and validation hold
    base = ["synthesis.placement=mask", "synthesis.patch_size=[0.2, 0.3]", "data.val_fraction=0.34"]
    tr = Trainer(tiny_cfg(tmp_path / "a", *base, "data.min_mask_share=0.02"), images=pool, masks=masks)
    assert (tr.n_train, tr.n_val_images, tr.n_left_out) == (4, 2, 4)
    assert float(tr.batches.cpu_images.max()) < 5  # none of the four without room is trained on
    assert tr.batches.masks.flatten(1).float().mean(1).min() >= 0.02
    b = tr.batches.draw(np.random.default_rng(0), 8)
    assert all((b.label[i, 0].numpy() > 0).any() for i in range(8))  # every image carries an anomaly
    # the default keeps every image; and a share no mask reaches is an error that says what to change
    tr0 = Trainer(tiny_cfg(tmp_path / "b", *base), images=pool, masks=masks)
    assert (tr0.n_train + tr0.n_val_images, tr0.n_left_out) == (10, 0)
    with pytest.raises(InputError, match="min_mask_share"):
        Trainer(tiny_cfg(tmp_path / "c", *base, "data.min_mask_share=0.5"), images=pool, masks=masks)


def test_mask_stack_from_data_mask_and_ct_lungs(tmp_path, pool):
    import SimpleITK as sitk

    from conftest import ct_phantom
    from napari_ppii.training.data import load_training_set

    np.save(tmp_path / "imgs.npy", pool)
    m = np.zeros(pool.shape, np.uint8)
    m[:, 8:24, 8:24] = 1
    np.save(tmp_path / "masks.npy", m)
    cfg = PPIIConfig().with_overrides(
        TINY
        + [f"data.train={tmp_path / 'imgs.npy'}", "synthesis.placement=mask", f"data.mask={tmp_path / 'masks.npy'}"]
    )
    imgs, masks = load_training_set(cfg)
    assert masks.shape == imgs.shape and np.array_equal(masks, m > 0)
    np.save(tmp_path / "bad.npy", m[:3])
    with pytest.raises(InputError, match="does not match"):
        load_training_set(cfg.with_overrides([f"data.mask={tmp_path / 'bad.npy'}"]))
    with pytest.raises(InputError, match="needs data.mask"):
        load_training_set(cfg.with_overrides(["data.mask=null"]))
    # CT: lungs from the HU volume, slice by slice at the training size
    vol, truth = ct_phantom((12, 64, 64))
    sitk.WriteImage(sitk.GetImageFromArray(vol), str(tmp_path / "ct.nii.gz"))
    ct = PPIIConfig().with_overrides(TINY + [f"data.train={tmp_path / 'ct.nii.gz'}", "synthesis.placement=lungs"])
    imgs, masks = load_training_set(ct)
    assert imgs.shape == masks.shape == (12, 32, 32)
    t = np.stack([np.asarray(s, float) for s in truth[:, ::2, ::2]]) > 0.5
    assert (masks & t).sum() > 0.8 * t.sum() and (masks & ~t).sum() < 0.3 * t.sum()


def test_checkpoint_selection_rules(tmp_path, pool):
    from skimage.io import imsave

    from conftest import chest_phantom

    held = tiny_cfg(tmp_path / "held", "training.steps=4", "training.val_every=2", "training.select=heldout")
    train(held, images=pool)
    vals = [r for r in read_log(tmp_path / "held" / "log.jsonl") if r["event"] == "val"]
    assert all("heldout_dice" in r and r["select_score"] == r["heldout_dice"] for r in vals)
    best = load_checkpoint(tmp_path / "held" / "best.pt")
    assert best["select_score"] == max(r["heldout_dice"] for r in vals)
    # reference: a labelled set from another dataset, scored with the evaluation's pixel AUROC
    rows = ["image,label,x0,y0,x1,y1"]
    for s in range(3):
        img, _ = chest_phantom(64, s, nodule=(28, 18, 3, 0.3))
        imsave(tmp_path / f"r{s}.png", (img * 255).astype(np.uint8), check_contrast=False)
        rows.append(f"r{s}.png,Nodule,15,25,21,31")
    (tmp_path / "ref.csv").write_text("\n".join(rows) + "\n")
    ref = tiny_cfg(
        tmp_path / "ref",
        "training.steps=4",
        "training.val_every=2",
        "training.select=reference",
        f"training.reference={tmp_path / 'ref.csv'}",
    )
    train(ref, images=pool)
    vals = [r for r in read_log(tmp_path / "ref" / "log.jsonl") if r["event"] == "val"]
    assert all(0 <= r["reference_pixel_auroc"] <= 1 and r["select_score"] == r["reference_pixel_auroc"] for r in vals)
    with pytest.raises(InputError, match="training.reference"):
        train(tiny_cfg(tmp_path / "x", "training.steps=2", "training.select=reference"), images=pool)


# ------------------------------------------------------------------------------------------------
# the CPU's bf16 path (native AVX512-BF16 / AMX; PPII_CPU_BF16=1 forces it where bf16 is emulated)
# ------------------------------------------------------------------------------------------------
def test_precision_path_follows_the_cpu_and_the_config(monkeypatch):
    from napari_ppii.device import fast_path

    cpu = torch.device("cpu")
    monkeypatch.setenv("PPII_CPU_BF16", "0")
    assert fast_path(cpu, True, True) == {
        "device": "cpu",
        "amp": False,
        "channels_last": False,
        "path": "cpu fp32 (no native bf16 on this CPU)",
    }
    monkeypatch.setenv("PPII_CPU_BF16", "1")
    on = fast_path(cpu, True, True)
    assert on["amp"] and on["channels_last"] and "bf16" in on["path"]
    off = fast_path(cpu, False, False)
    assert not off["amp"] and not off["channels_last"] and off["path"] == "cpu fp32"


def test_cpu_bf16_path_trains_and_resumes_exactly(tmp_path, monkeypatch):
    monkeypatch.setenv("PPII_CPU_BF16", "1")
    pool = np.stack([smooth_image((48, 48), seed=s) for s in range(6)])
    cfg = tiny_cfg(
        tmp_path / "a",
        "data.image_size=48",
        "training.batch_size=8",
        "training.steps=120",
        "training.val_every=60",
        "training.lr=3e-3",
        "model.base_channels=8",
    )
    train(cfg, images=pool)
    recs = read_log(tmp_path / "a" / "log.jsonl")
    start = recs[0]
    assert start["event"] == "start" and "bf16" in start["precision"] and "channels_last" in start["precision"]
    assert start["precision"].endswith("fast-layers")  # training.fast_layers, on by default on this path
    losses = [r["loss"] for r in recs if r["event"] == "step"]
    assert np.mean(losses[-10:]) < 0.85 * np.mean(losses[:5])
    full = load_checkpoint(tmp_path / "a" / "last.pt")
    assert all(torch.isfinite(v).all() for v in full["model"].values() if v.is_floating_point())
    # the weights stay fp32 (autocast computes in bf16), and resuming gives the uninterrupted run's weights
    assert all(v.dtype == torch.float32 for v in full["model"].values() if v.is_floating_point())
    b = cfg.with_overrides([f"training.out_dir={tmp_path / 'b'}"])
    train(b, images=pool, stop_after=70)
    train(b, resume=tmp_path / "b" / "last.pt", images=pool)
    half = load_checkpoint(tmp_path / "b" / "last.pt")
    assert all(torch.equal(full["model"][k], half["model"][k]) for k in full["model"])
    # and bf16 really ran: the fp32 path from the same seed ends elsewhere
    c = cfg.with_overrides(
        [
            f"training.out_dir={tmp_path / 'c'}",
            "training.amp=false",
            "training.channels_last=false",
            "training.steps=20",
        ]
    )
    d = cfg.with_overrides([f"training.out_dir={tmp_path / 'd'}", "training.steps=20"])
    train(c, images=pool)
    train(d, images=pool)
    x, y = load_checkpoint(tmp_path / "c" / "last.pt"), load_checkpoint(tmp_path / "d" / "last.pt")
    assert any(not torch.equal(x["model"][k], y["model"][k]) for k in x["model"] if x["model"][k].is_floating_point())
    # training.fast_layers=false: the standard kernels (the path says so), the same model to bf16 rounding
    e = d.with_overrides([f"training.out_dir={tmp_path / 'e'}", "training.fast_layers=false"])
    train(e, images=pool)
    assert "fast-layers" not in read_log(tmp_path / "e" / "log.jsonl")[0]["precision"]
    z = load_checkpoint(tmp_path / "e" / "last.pt")
    assert any(not torch.equal(y["model"][k], z["model"][k]) for k in y["model"] if y["model"][k].is_floating_point())
    flat = lambda ck: torch.cat([v.flatten() for k, v in ck["model"].items() if "weight" in k or "bias" in k])  # noqa: E731
    assert float((flat(z) - flat(y)).norm() / flat(y).norm()) < 0.05  # 20 steps apart only by rounding


def test_best_score_names_its_rule_and_old_checkpoints_resume(tmp_path, pool):
    """Checkpoints and logs hold ``best_score`` with the rule's name; a checkpoint written before the
    rename (``best_dice``) resumes with its best score kept (a lower later score does not replace best.pt)."""
    from napari_ppii.checkpoint import save_checkpoint

    cfg = tiny_cfg(tmp_path / "a", "training.steps=6", "training.val_every=3")
    res = train(cfg, images=pool, stop_after=3)
    ck = load_checkpoint(res.last_checkpoint)
    assert ck["select"] == "val_dice" and ck["best_score"] == ck["val_dice"] == res.best_score
    assert res.select == "val_dice" and "best_dice" not in ck
    recs = read_log(tmp_path / "a" / "log.jsonl")
    assert [r["best_score"] for r in recs if r["event"] == "val"] == [ck["best_score"]]
    old = dict(ck)
    old["best_dice"] = 2.0  # an old checkpoint, its best beyond any Dice: best.pt must not move on resume
    del old["best_score"], old["select"]
    save_checkpoint(old, tmp_path / "a" / "last.pt")
    best_before = (tmp_path / "a" / "best.pt").read_bytes()
    res = train(cfg, resume=tmp_path / "a" / "last.pt", images=pool)
    assert res.step == 6 and res.best_score == 2.0
    assert (tmp_path / "a" / "best.pt").read_bytes() == best_before


def test_stop_request_is_a_context_manager_that_restores_handlers():
    import os
    import signal

    from napari_ppii.training.stop import StopRequest

    before = signal.getsignal(signal.SIGTERM)
    with StopRequest() as stop:
        assert not stop.requested and signal.getsignal(signal.SIGTERM) is not before
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested
    assert signal.getsignal(signal.SIGTERM) is before
    with pytest.raises(KeyError):  # restored also when the body raises
        with StopRequest():
            raise KeyError("x")
    assert signal.getsignal(signal.SIGTERM) is before


def test_compiled_step_trains_resumes_exactly_and_auto_chooses_by_run_length(tmp_path, monkeypatch, pool):
    """``training.compile``: the compiled step trains, its start record says so, N + resume + N steps give
    the uninterrupted run's weights; ``auto`` compiles only long runs on the bf16 path; a compiler failure
    falls back to the eager step with a log record."""
    from napari_ppii.training import loop

    monkeypatch.setenv("PPII_CPU_BF16", "1")
    cfg = tiny_cfg(tmp_path / "a", "training.steps=6", "training.val_every=3", "training.compile=always")
    train(cfg, images=pool)
    recs = read_log(tmp_path / "a" / "log.jsonl")
    assert recs[0]["precision"].endswith(" compiled") and not any(r["event"] == "compile_failed" for r in recs)
    full = load_checkpoint(tmp_path / "a" / "last.pt")
    assert not any(k.startswith("_orig_mod") for k in full["model"])  # the plain model's weights are saved
    b = cfg.with_overrides([f"training.out_dir={tmp_path / 'b'}"])
    train(b, images=pool, stop_after=3)
    train(b, resume=tmp_path / "b" / "last.pt", images=pool)
    half = load_checkpoint(tmp_path / "b" / "last.pt")
    assert all(torch.equal(full["model"][k], half["model"][k]) for k in full["model"])

    assert PPIIConfig().with_overrides(["training.compile=false"]).training.compile == "never"  # YAML booleans
    t = PPIIConfig().training
    bf16, fp32 = {"amp": True, "device": "cuda"}, {"amp": False, "device": "cuda"}
    assert loop._wants_compile(t.model_copy(update={"steps": 10_000}), bf16, False)
    # not on the CPU: there the eager step with freed memory retained ran faster (benchmarks/README.md)
    assert not loop._wants_compile(t.model_copy(update={"steps": 10_000}), {"amp": True, "device": "cpu"}, False)
    assert loop._wants_compile(
        t.model_copy(update={"steps": 10, "compile": "always"}), {"amp": True, "device": "cpu"}, False
    )
    assert not loop._wants_compile(t.model_copy(update={"steps": 4000}), bf16, False)
    assert not loop._wants_compile(t.model_copy(update={"steps": 500}), bf16, False)
    assert not loop._wants_compile(t.model_copy(update={"steps": 10_000}), fp32, False)
    assert not loop._wants_compile(t.model_copy(update={"steps": 10_000}), bf16, True)
    assert not loop._wants_compile(t.model_copy(update={"steps": 10_000, "compile": "never"}), bf16, False)

    def broken(module, *a, **k):
        def fail(*args, **kwargs):
            raise RuntimeError("no C++ compiler")

        return fail

    monkeypatch.setattr(loop.torch, "compile", broken)
    c = cfg.with_overrides([f"training.out_dir={tmp_path / 'c'}"])
    res = train(c, images=pool)
    recs = read_log(tmp_path / "c" / "log.jsonl")
    failed = [r for r in recs if r["event"] == "compile_failed"]
    assert len(failed) == 1 and "no C++ compiler" in failed[0]["error"] and res.step == 6
    assert not failed[0]["precision"].endswith("compiled")
