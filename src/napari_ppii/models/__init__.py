# SPDX-License-Identifier: BSD-3-Clause
"""Backbones: U-Net, MC-dropout U-Net and PHiSeg, all with ``predict(x, samples) -> (mean, variance)``."""

from __future__ import annotations

from .phiseg import PHiSeg
from .unet import AnomalyModel, MCDropoutUNet, UNet, set_fast_layers


def build_model(cfg) -> AnomalyModel:
    """The backbone a :class:`~napari_ppii.config.ModelConfig` describes."""
    if cfg.backbone == "unet":
        return UNet(base_channels=cfg.base_channels, levels=cfg.levels, dropout=0.0)
    if cfg.backbone == "mc_unet":
        return MCDropoutUNet(base_channels=cfg.base_channels, levels=cfg.levels, dropout=cfg.dropout)
    if cfg.backbone == "phiseg":
        return PHiSeg(
            base_channels=cfg.base_channels,
            latent_levels=cfg.levels,
            latent_channels=cfg.latent_channels,
            beta=cfg.kl_weight,
        )
    raise ValueError(f"unknown backbone {cfg.backbone!r}")


__all__ = ["AnomalyModel", "MCDropoutUNet", "PHiSeg", "UNet", "build_model", "set_fast_layers"]
