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

    #: with ``split_cat`` set, :meth:`cat_forward` convolves each part with its slice of the first
    #: convolution's weights and adds the results instead of concatenating the parts first: the same layer
    #: (a convolution is linear in its input channels), without the copy into, and the slicing of the
    #: gradient out of, a concatenated channels_last tensor (at 256x256 x 16 + 16 channels, bf16, two cores:
    #: concatenation + convolution forward + backward 63 ms, part by part 41 ms; benchmarks/README.md)
    split_cat = False

    def cat_forward(self, *parts: torch.Tensor) -> torch.Tensor:
        """``self(torch.cat(parts, 1))``, computed part by part with ``split_cat``."""
        if not self.split_cat or len(parts) == 1:
            return self(torch.cat(parts, 1) if len(parts) > 1 else parts[0])
        conv = self[0]
        y, start = None, 0
        for p in parts:
            w = conv.weight[:, start : start + p.shape[1]]
            z = F.conv2d(p, w, conv.bias if y is None else None, conv.stride, conv.padding, conv.dilation)
            y = z if y is None else y + z
            start += p.shape[1]
        for layer in list(self)[1:]:
            y = layer(y)
        return y


class UpConv2x2(nn.ConvTranspose2d):
    """The U-Net's 2x2, stride-2 transposed convolution (upsampling by 2).

    With ``as_matmul`` set it is computed as a 1x1 convolution to 4x the output channels and a rearrangement
    of the four output pixels per input pixel: the same parameters and, in fp32, the same result to rounding
    (tests/test_training.py); on channels_last CPU tensors much faster than oneDNN's strided-deconvolution
    kernels, whose weight gradient ran at 20 GFLOP/s at the top level (bf16, two cores; benchmarks/README.md).
    """

    as_matmul = False

    def __init__(self, cin: int, cout: int):
        super().__init__(cin, cout, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.as_matmul:
            return super().forward(x)
        cin, cout, kh, kw = self.weight.shape
        # rows ordered (i, j, out channel): the rearrangement then moves runs of kw * cout contiguous values
        w = self.weight.permute(2, 3, 1, 0).reshape(kh * kw * cout, cin, 1, 1)
        z = F.conv2d(x, w, None if self.bias is None else self.bias.repeat(kh * kw))
        n, _, h, wd = z.shape
        z = z.permute(0, 2, 3, 1).reshape(n, h, wd, kh, kw, cout).permute(0, 1, 3, 2, 4, 5)
        return z.reshape(n, h * kh, wd * kw, cout).permute(0, 3, 1, 2)


class Head1x1(nn.Conv2d):
    """The 1x1 output convolution; with ``as_matmul`` set, a matrix product over the channels of a
    channels_last tensor (oneDNN's 1x1 kernels for one output channel ran at 4-22 GFLOP/s)."""

    as_matmul = False

    def __init__(self, cin: int, cout: int):
        super().__init__(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.as_matmul:
            return super().forward(x)
        out = F.linear(x.permute(0, 2, 3, 1), self.weight.flatten(1), self.bias)
        return out.permute(0, 3, 1, 2)


def set_fast_layers(model: nn.Module, on: bool) -> int:
    """Switch every :class:`UpConv2x2` and :class:`Head1x1` of ``model`` to (or from) their matrix-product
    form and every :class:`ConvBlock` to (or from) convolving concatenated inputs part by part; returns how
    many modules were switched.  The parameters and the state dict do not change."""
    n = 0
    for m in model.modules():
        if isinstance(m, (UpConv2x2, Head1x1)):
            m.as_matmul = bool(on)
            n += 1
        elif isinstance(m, ConvBlock):
            m.split_cat = bool(on)
            n += 1
    return n


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
            self.upconv.append(UpConv2x2(ch[i], ch[i - 1]))
            self.up.append(ConvBlock(2 * ch[i - 1], ch[i - 1], dropout))
        self.head = Head1x1(ch[0], out_channels)

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
            x = block.cat_forward(x, skips.pop())
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
