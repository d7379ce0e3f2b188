# SPDX-License-Identifier: BSD-3-Clause
"""U-Net (Ronneberger et al. 2015) and its Monte-Carlo-dropout variant (Gal & Ghahramani 2016).

Five resolution levels by default; each level is two 3x3 convolutions with batch normalisation and
ReLU.  ``dropout > 0`` adds dropout after every block (the paper's MC U-Net: 0.1), kept active at
inference by :meth:`predict` to draw samples.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ConvBlock(nn.Sequential):
    def __init__(self, cin: int, cout: int, dropout: float = 0.0):
        layers = [
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        ]
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)


def level_channels(base: int, levels: int, cap: int = 512) -> list[int]:
    return [min(base * 2**i, cap) for i in range(levels)]


class AnomalyModel(nn.Module):
    """The one inference interface of all backbones: ``predict(x, samples) -> (mean, variance)``.

    ``forward`` returns logits (training); ``predict`` returns the mean anomaly map (sigmoid
    probabilities) and the per-pixel variance over ``samples`` stochastic passes (zero for
    deterministic models).  Inputs are ``(B, 1, H, W)`` in [0, 1]; H and W need not be multiples of
    ``2**(levels-1)`` (inputs are padded and outputs cropped).
    """

    levels: int = 5
    stochastic: bool = False

    def _pad(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        m = 2 ** (self.levels - 1)
        h, w = x.shape[-2:]
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return x, (h, w)

    def training_forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits for the training loss and any extra loss term (PHiSeg's KL; zero here)."""
        return self(x), x.new_zeros(())

    def sample_logits(self, x: torch.Tensor) -> torch.Tensor:
        """One (stochastic) pass at inference; default: the plain forward."""
        return self(x)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, samples: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        was_training = self.training
        self.eval()
        try:
            n = samples if self.stochastic else 1
            self._set_stochastic(True)
            probs = torch.stack([torch.sigmoid(self.sample_logits(x).float()) for _ in range(max(1, n))])
        finally:
            self._set_stochastic(False)
            self.train(was_training)
        mean = probs.mean(0)
        var = probs.var(0, unbiased=False) if probs.shape[0] > 1 else torch.zeros_like(mean)
        return mean, var

    def _set_stochastic(self, on: bool) -> None:
        """Hook for MC dropout: switch dropout layers on at inference."""


class UNet(AnomalyModel):
    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        base_channels: int = 16,
        levels: int = 5,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.levels = levels
        self.dropout = dropout
        self.stochastic = dropout > 0
        ch = level_channels(base_channels, levels)
        self.down = nn.ModuleList()
        cin = in_channels
        for c in ch:
            self.down.append(ConvBlock(cin, c, dropout))
            cin = c
        self.up = nn.ModuleList()
        self.upconv = nn.ModuleList()
        for i in range(levels - 1, 0, -1):
            self.upconv.append(nn.ConvTranspose2d(ch[i], ch[i - 1], 2, stride=2))
            self.up.append(ConvBlock(2 * ch[i - 1], ch[i - 1], dropout))
        self.head = nn.Conv2d(ch[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, (h, w) = self._pad(x)
        skips = []
        for i, block in enumerate(self.down):
            x = block(x)
            if i < self.levels - 1:
                skips.append(x)
                x = F.max_pool2d(x, 2)
        for upconv, block in zip(self.upconv, self.up):
            x = upconv(x)
            x = block(torch.cat([x, skips.pop()], dim=1))
        return self.head(x)[..., :h, :w]

    def _set_stochastic(self, on: bool) -> None:
        if self.dropout > 0:
            for m in self.modules():
                if isinstance(m, nn.Dropout2d):
                    m.train(on)


def MCDropoutUNet(
    in_channels: int = 1, out_channels: int = 1, base_channels: int = 16, levels: int = 5, dropout: float = 0.1
) -> UNet:
    """U-Net with dropout after every block, sampled at inference (the paper: rate 0.1)."""
    return UNet(in_channels, out_channels, base_channels, levels, dropout)
