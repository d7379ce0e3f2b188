# SPDX-License-Identifier: BSD-3-Clause
"""The step-based trainer.

``train(cfg)`` trains ``cfg.model`` on normal images with synthetic anomalies generated on the fly, for
``cfg.training.steps`` steps; validates every ``val_every`` steps on a fixed seeded synthetic set (soft
Dice over all validation pixels, :mod:`.validate`); keeps ``last.pt`` and ``best.pt`` (by the score of
``training.select``, :mod:`.select`: the paper's validation Dice by default) as ``best_score``; logs JSON
lines to ``out_dir/log.jsonl``.  The run folder's lock is :mod:`.rundir`'s, the stop handling
:mod:`.stop`'s.  Resuming from a checkpoint continues exactly: on the CPU, N steps + resume N steps gives
the weights of 2N uninterrupted steps.

Under ``torchrun --nproc_per_node N`` it runs DistributedDataParallel (NCCL on CUDA, gloo on the CPU),
each process drawing its own batches (seed + rank); rank 0 writes checkpoints and the log.
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..config import PPIIConfig
from ..errors import InputError
from ..models import build_model, set_fast_layers
from ..checkpoint import load_checkpoint, remove_partial_writes, save_checkpoint
from ..device import fast_path, resolve_device, retain_freed_memory
from .data import SyntheticBatches, load_training_set, split_indices, training_masks, validation_set, with_room
from .log import JsonlLog
from .losses import segmentation_loss
from .select import Selector
from .stop import StopRequest
from .validate import evaluate_dice


class TrainingError(RuntimeError):
    """Training stopped (out of memory, diverged): the message says what to change."""


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "DistContext":
        ws = int(os.environ.get("WORLD_SIZE", "1"))
        return cls(int(os.environ.get("RANK", "0")), ws, int(os.environ.get("LOCAL_RANK", "0")))


def lr_lambda(cfg: PPIIConfig):
    t = cfg.training
    floor = t.lr_min / t.lr

    def f(step: int) -> float:
        if t.warmup_steps and step < t.warmup_steps:
            return (step + 1) / t.warmup_steps
        span = max(1, t.steps - t.warmup_steps)
        p = min(1.0, (step - t.warmup_steps) / span)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p))

    return f


class _TrainStep(nn.Module):
    """forward(x, y) -> (logits, aux): lets DDP wrap PHiSeg's posterior pass too."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, y):
        return self.model.training_forward(x, y)


#: Runs shorter than this do not pay for compiling the step under ``compile: auto``: compiling takes about a
#: minute on two cores and saved about 3 % of a full step here (bench_training.py), even at about 2,000 steps.
COMPILE_MIN_STEPS = 5000


def _wants_compile(t, path: dict, distributed: bool) -> bool:
    """Whether the training step is compiled: ``training.compile`` always, or ``auto`` on CUDA's bf16 path for a
    run of at least :data:`COMPILE_MIN_STEPS` steps (never under torchrun; not on the CPU, where the eager step
    with freed memory retained ran faster, benchmarks/README.md)."""
    if distributed or t.compile == "never":
        return False
    if t.compile == "always":
        return True
    return bool(path["amp"]) and path.get("device") == "cuda" and t.steps >= COMPILE_MIN_STEPS


def _rng_state(data_rng: np.random.Generator, device, numpy_state: dict | None = None) -> dict:
    st = {"numpy": numpy_state or data_rng.bit_generator.state, "torch": torch.get_rng_state()}
    if device.type == "cuda":
        st["cuda"] = torch.cuda.get_rng_state(device)
    return st


def _set_rng_state(data_rng: np.random.Generator, st: dict, device) -> None:
    data_rng.bit_generator.state = st["numpy"]
    torch.set_rng_state(st["torch"])
    if device.type == "cuda" and "cuda" in st:
        torch.cuda.set_rng_state(st["cuda"], device)


@dataclass
class TrainResult:
    step: int
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    best_score: float  # the best score of the selection rule ``select`` (``training.select``)
    last_loss: float
    select: str = "val_dice"


def train(
    cfg: PPIIConfig,
    resume: str | Path | None = None,
    *,
    progress: bool = False,
    images: np.ndarray | None = None,
    stop_after: int | None = None,
    masks: np.ndarray | None = None,
) -> TrainResult:
    """Train as ``cfg`` says; ``resume`` continues from a checkpoint.  ``images`` (``(N, S, S)`` in
    [0, 1]) replaces ``data.train`` (e.g. images from napari layers or tests), ``masks`` (same shape)
    their placement masks.  ``best.pt`` is chosen by ``training.select``.

    ``stop_after`` (or SIGTERM/SIGINT) stops early at that step and writes ``last.pt``: resuming it with
    the same configuration continues exactly where the uninterrupted run would be.

    The run folder is locked for the whole run (a second training into it is refused before it writes
    anything); a new run (no ``resume``) into a folder holding checkpoints is refused -- see
    :mod:`napari_ppii.training.rundir` for choosing a free folder."""
    from .rundir import RunLock, checkpoints_in

    out = Path(cfg.training.out_dir)
    kwargs = dict(progress=progress, images=images, stop_after=stop_after, masks=masks)
    if not DistContext.from_env().is_main:
        return _train(cfg, resume, **kwargs)
    with RunLock(out):
        remove_partial_writes(out)  # a run killed mid-write left them; the lock says no one else writes here
        found = checkpoints_in(out)
        if resume is None and found:
            raise InputError(
                f"holds checkpoints of an earlier run ({', '.join(p.name for p in found[:3])}); a new "
                f"run would overwrite them: resume it ({out / 'last.pt'}) or train into another "
                "folder",
                out,
            )
        return _train(cfg, resume, **kwargs)


def _save(state: dict, path: Path, log, step: int) -> Path:
    """``save_checkpoint``; a failed write (full disk, no permission) stops training with a clear message
    -- the file it was replacing is intact (written to a temporary file, moved into place only when whole)."""
    try:
        return save_checkpoint(state, path)
    except OSError as exc:
        msg = (
            f"could not write the checkpoint {path} at step {step} ({exc.strerror or exc}); the previous "
            f"{path.name} (if any) is intact: free space or choose another run folder, then resume from it"
        )
        try:
            log.write(event="error", step=step, error=msg)
        except OSError:
            pass
        raise TrainingError(msg) from None


def _train(cfg: PPIIConfig, resume, *, progress, images, stop_after, masks) -> TrainResult:
    return Trainer(cfg, images=images, masks=masks).run(resume, progress=progress, stop_after=stop_after)


class Trainer:
    """One training run in five parts: set-up (``__init__``: device, data, model, optimiser), ``restore``
    (a checkpoint, every RNG state included), ``step`` (one optimisation step), ``validate`` (validation,
    selection, checkpoints) and ``finish`` (the state to resume from, the last log record).  ``run`` ties
    them together.  The order of random draws is fixed, so N steps + resume + N steps gives the weights
    of 2N uninterrupted steps."""

    def __init__(self, cfg: PPIIConfig, *, images: np.ndarray | None = None, masks: np.ndarray | None = None):
        self.cfg = cfg
        self.dist = dist = DistContext.from_env()
        t = self.t = cfg.training
        if t.num_threads:
            torch.set_num_threads(t.num_threads)
        self.device = device = resolve_device(t.device, dist.local_rank)
        if dist.enabled and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.manual_seed(cfg.seed + dist.rank)
        self.data_rng = np.random.default_rng([cfg.seed, dist.rank])

        if images is None:
            self.inputs: dict = {}
            pool, pool_masks = load_training_set(cfg, self.inputs)  # the modality from the scan as read
        else:
            pool = np.asarray(images, dtype=np.float32)
            pool_masks = training_masks(cfg, pool, masks)
            self.inputs = {
                "modality": cfg.data.modality,
                "train_data": None,
                "image_size": cfg.data.image_size,
                "preprocess": cfg.preprocess.model_dump(mode="json"),
            }
        if pool.ndim != 3 or len(pool) == 0:
            raise InputError(f"training images must be a non-empty (N, H, W) stack, got shape {pool.shape}")
        self.n_left_out = 0
        if pool_masks is not None and cfg.data.min_mask_share > 0:
            keep = with_room(pool_masks, cfg.data.min_mask_share)
            pool, pool_masks, self.n_left_out = pool[keep], pool_masks[keep], int((~keep).sum())
        tr_idx, va_idx = split_indices(len(pool), cfg)
        self.n_train, self.n_val_images = int(len(tr_idx)), int(len(va_idx))
        va_m = None if pool_masks is None else pool_masks[va_idx]
        self.val = validation_set(pool[va_idx], cfg, va_m)
        self.selector = Selector(cfg, pool[va_idx], va_m)
        self.batches = SyntheticBatches(
            pool[tr_idx],
            cfg,
            device,
            on_device=t.synthesis_on_device,
            masks=None if pool_masks is None else pool_masks[tr_idx],
        )

        self.model = model = build_model(cfg.model).to(device)
        self.path = fast_path(device, t.amp, t.channels_last)
        self.allocator = "system"
        if device.type == "cpu" and t.retain_memory:
            self.allocator = retain_freed_memory() or "system (retain_memory: not available here)"
        if self.path["channels_last"]:
            self.model = model = model.to(memory_format=torch.channels_last)
            if device.type == "cpu" and t.fast_layers and set_fast_layers(model, True):
                self.path = {**self.path, "path": self.path["path"] + " fast-layers"}
        self.opt = torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_lambda(cfg))
        self.step_count, self.best = 0, -1.0
        self.step_fn = _TrainStep(model)
        self.compiled = _wants_compile(t, self.path, dist.enabled)
        if self.compiled:
            self.eager_step_fn = self.step_fn
            self.step_fn = torch.compile(self.step_fn)
            self.path = {**self.path, "path": self.path["path"] + " compiled"}
        if dist.enabled:
            self.step_fn = nn.parallel.DistributedDataParallel(
                self.step_fn, device_ids=[device.index] if device.type == "cuda" else None
            )
        self.out = Path(t.out_dir)
        self.log = JsonlLog(self.out / "log.jsonl" if dist.is_main else None)
        self.last_path = self.best_path = None
        self.saved_step = 0
        self.loss = float("nan")
        self._state: dict | None = None  # the state last written, for a kept copy at the same step
        # the next batch, drawn in a background thread while a step runs (training.prefetch), and the data
        # RNG's state before that draw: the state a checkpoint keeps, so that a resumed run draws it again
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="ppii-batch") if t.prefetch else None
        self._pending: tuple[Future, dict] | None = None

    # ------------------------------------------------------------------ parts
    def restore(self, path: str | Path) -> None:
        """Continue from a checkpoint: weights, optimiser, schedule, step, best score and RNG states."""
        ck = load_checkpoint(path, map_location=self.device)
        if "optimizer" not in ck:
            raise InputError(
                "this checkpoint holds no training state (an exported model or an ensemble): it can predict, "
                "not resume; resume from a run's last.pt",
                path,
            )
        try:
            self.model.load_state_dict(ck["model"])
        except RuntimeError as exc:
            raise InputError(
                f"checkpoint does not fit the configured model ({str(exc).splitlines()[0]})", path
            ) from None
        self.opt.load_state_dict(ck["optimizer"])
        self.sched.load_state_dict(ck["scheduler"])
        # best_score (checkpoints before it was named so: best_dice, holding whatever score selected)
        self.step_count, self.best = int(ck["step"]), float(ck.get("best_score", ck.get("best_dice", -1.0)))
        self.saved_step = self.step_count
        self._drop_pending()
        _set_rng_state(self.data_rng, ck["rng"], self.device)

    def state(self, val_dice: float | None) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "step": self.step_count,
            "rng": _rng_state(self.data_rng, self.device, self._pending[1] if self._pending else None),
            "config": self.cfg.to_dict(),
            "best_score": self.best,
            "select": self.t.select,
            "inputs": self.inputs,
            "val_dice": val_dice,
            "backbone": self.cfg.model.backbone,
        }

    def _draw(self):
        return self.batches.draw(self.data_rng, self.t.batch_size)

    def _next_batch(self):
        """The batch of this step (the prefetched one when there is one) and, with ``training.prefetch``,
        the next step's draw started in the background.  Only these draws use the data RNG, one at a time."""
        if self._pending is not None:
            fut, _ = self._pending
            self._pending = None
            b = fut.result()
        else:
            b = self._draw()
        if self._pool is not None and self.step_count + 1 < self.t.steps:
            before = self.data_rng.bit_generator.state
            self._pending = (self._pool.submit(self._draw), before)
        return b

    def _drop_pending(self) -> None:
        """Forget a prefetched batch (its draw finishes first) and put the data RNG back to before it."""
        if self._pending is not None:
            fut, before = self._pending
            self._pending = None
            fut.exception()  # wait; an error of an unused draw does not matter
            self.data_rng.bit_generator.state = before

    def close(self) -> None:
        """End the background draw (the RNG put back to before it) and its thread."""
        self._drop_pending()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def step(self) -> float:
        """One optimisation step on a fresh synthetic batch; returns the loss."""
        t = self.t
        b = self._next_batch()
        x, y = b.image, b.label
        if self.path["channels_last"]:
            x = x.contiguous(memory_format=torch.channels_last)
        self.model.train()
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.path["amp"]):
            logits, aux = self._forward(x, y)
        loss = (
            segmentation_loss(
                logits,
                y,
                b.variance,
                kind=t.loss,
                confidence_weighting=t.confidence_weighting,
                gamma=t.confidence_gamma,
            )
            + aux.float()
        )
        if not torch.isfinite(loss):
            raise TrainingError(
                f"loss became {float(loss)} at step {self.step_count + 1}: lower training.lr "
                f"(now {t.lr}) or check the data"
            )
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()
        self.step_count += 1
        self.loss = float(loss.detach())
        return self.loss

    def _forward(self, x, y):
        if not self.compiled:
            return self.step_fn(x, y)
        try:
            return self.step_fn(x, y)
        except Exception as exc:  # noqa: BLE001 -- any compiler failure: train on, eagerly
            self.compiled = False
            self.step_fn = self.eager_step_fn
            self.path = {**self.path, "path": self.path["path"].removesuffix(" compiled")}
            self.log.write(
                event="compile_failed",
                step=self.step_count,
                error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300],
                precision=self.path["path"],
            )
            return self.step_fn(x, y)

    def validate(self, **record) -> None:
        """Validation Dice, the selection score, ``last.pt`` and (when it is the best) ``best.pt``."""
        cfg, step = self.cfg, self.step_count
        dice, vloss = evaluate_dice(self.model, self.val, self.device, samples=min(cfg.model.samples, 4))
        score, extra = self.selector.score(self.model, self.device, dice)
        is_best = score > self.best
        self.best = max(self.best, score)
        if self.dist.is_main:
            state = self._state = self.state(dice)
            state["select_score"] = score
            self.last_path = _save(state, self.out / "last.pt", self.log, step)
            self.saved_step = step
            if is_best:
                self.best_path = _save(state, self.out / "best.pt", self.log, step)
            self.log.write(
                event="val",
                step=step,
                val_dice=dice,
                val_loss=vloss,
                best_score=self.best,
                loss=self.loss,
                lr=self.sched.get_last_lr()[0],
                select=self.t.select,
                select_score=score,
                **record,
                **extra,
            )

    def keep(self) -> None:
        """A copy of the state as ``step_NNNNNNN.pt`` (checkpoint selection on real lesions afterwards)."""
        step = self.step_count
        state = self._state if self.saved_step == step and self._state is not None else self.state(None)
        kept = _save(state, self.out / f"step_{step:07d}.pt", self.log, step)
        self.log.write(event="kept", step=step, path=str(kept))

    def finish(self) -> TrainResult:
        """Keep the state to resume from when stopped between validations; the last log record."""
        step, out = self.step_count, self.out
        if step != self.saved_step and self.dist.is_main:
            self.last_path = _save(self.state(None), out / "last.pt", self.log, step)
        self.log.write(
            event="stopped" if step < self.t.steps else "done",
            step=step,
            best_score=self.best,
            select=self.t.select,
            loss=self.loss,
        )
        if self.dist.enabled:
            torch.distributed.barrier()
        best = self.best_path if self.best_path else (out / "best.pt" if (out / "best.pt").exists() else None)
        return TrainResult(step, self.last_path, best, self.best, self.loss, self.t.select)

    # ------------------------------------------------------------------ the loop
    def run(
        self, resume: str | Path | None = None, *, progress: bool = False, stop_after: int | None = None
    ) -> TrainResult:
        """Train to ``training.steps`` (or ``stop_after``, or SIGTERM/SIGINT: then ``last.pt`` is written)."""
        cfg, t, dist = self.cfg, self.t, self.dist
        if resume is not None:
            self.restore(resume)
        if dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            cfg.save(self.out / "config.yaml")
            self.log.write(
                event="start",
                step=self.step_count,
                steps=t.steps,
                backbone=cfg.model.backbone,
                device=str(self.device),
                precision=self.path["path"],
                allocator=self.allocator,
                prefetch=self._pool is not None,
                threads=torch.get_num_threads(),
                world_size=dist.world_size,
                n_train=self.n_train,
                n_val_images=self.n_val_images,
                n_left_out=self.n_left_out,
                resumed_from=str(resume) if resume else None,
                # what a bit-for-bit rerun needs beside the configuration (README, "Reproducing a figure")
                seed=cfg.seed,
                torch=torch.__version__,
                numpy=np.__version__,
            )
        bar = None
        if progress and dist.is_main:
            from tqdm import tqdm

            bar = tqdm(
                total=t.steps,
                initial=self.step_count,
                desc=f"train {cfg.model.backbone}",
                unit="step",
                dynamic_ncols=True,
            )
        t0, s0 = time.perf_counter(), self.step_count
        try:
            with StopRequest() as stopper:
                while self.step_count < t.steps:
                    if (stop_after is not None and self.step_count >= stop_after) or stopper.requested:
                        break
                    loss = self.step()
                    step = self.step_count
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{loss:.4f}")
                    elapsed = time.perf_counter() - t0
                    speed = {
                        "images_per_s": (step - s0) * t.batch_size * dist.world_size / max(elapsed, 1e-9),
                        "eta_s": (t.steps - step) * elapsed / max(step - s0, 1),
                    }
                    if step % t.log_every == 0 or step == t.steps:
                        self.log.write(event="step", step=step, loss=loss, lr=self.sched.get_last_lr()[0], **speed)
                    if step % t.val_every == 0 or step == t.steps:
                        self.validate(**speed)
                    if t.keep_every and step % t.keep_every == 0 and dist.is_main:
                        self.keep()
        except torch.cuda.OutOfMemoryError:
            msg = (
                f"out of GPU memory at step {self.step_count + 1} (batch_size {t.batch_size}, image_size "
                f"{cfg.data.image_size}, base_channels {cfg.model.base_channels}): lower training.batch_size "
                f"first, then data.image_size or model.base_channels; the last checkpoint ({self.out / 'last.pt'}) "
                "is intact"
            )
            self.log.write(event="error", step=self.step_count, error=msg)
            raise TrainingError(msg) from None
        finally:
            if bar is not None:
                bar.close()
            self.close()
        return self.finish()


def config_from_checkpoint(path: str | Path) -> PPIIConfig:
    ck = load_checkpoint(path)
    return PPIIConfig.from_dict(ck["config"], source=path)
