# SPDX-License-Identifier: BSD-3-Clause
"""PHiSeg (Baumgartner et al., MICCAI 2019): a hierarchical conditional VAE with a U-Net-like likelihood.

* ``L = latent_levels`` Gaussian latents ``z_l`` at the L coarsest of ``R = L + 2`` resolution levels
  (the paper: "PHiSeg includes two additional resolution levels"): the likelihood network decodes the
  hierarchy coarse to fine and then climbs the two finest levels without latents.
* Prior ``p(z_l | z_{l+1}, x)`` from an encoder of the image; posterior ``q(z_l | z_{l+1}, x, y)`` from
  an encoder of image and label.  In training the prior at each level is conditioned on the posterior's
  samples of the coarser level (as in PHiSeg), so each KL term compares conditionals given the same
  ``z_{l+1}``.
* Loss = reconstruction (the trainer's segmentation loss on the posterior sample's logits)
  ``+ beta * KL``, the KL summed over latent dimensions and divided by the number of image pixels (the
  same scale as a per-pixel loss).
* Inference draws ``samples`` hierarchies from the prior; :meth:`predict` returns their mean and
  variance (the paper reports the mean of 50 samples).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .unet import AnomalyModel, ConvBlock, Head1x1, UpConv2x2, level_channels


class _Encoder(nn.Module):
    def __init__(self, cin: int, ch: list[int]):
        super().__init__()
        self.blocks = nn.ModuleList()
        for c in ch:
            self.blocks.append(ConvBlock(cin, c))
            cin = c

    def forward(self, x):
        feats = []
        for i, b in enumerate(self.blocks):
            x = b(x if i == 0 else F.max_pool2d(x, 2))
            feats.append(x)
        return feats


class _LatentHeads(nn.Module):
    """mu / log-variance of each latent level from encoder features (+ the coarser level's sample)."""

    def __init__(self, ch: list[int], latent_idx: list[int], lc: int):
        super().__init__()
        self.latent_idx = latent_idx
        top = max(latent_idx)
        self.heads = nn.ModuleDict()
        for i in latent_idx:
            cin = ch[i] + (0 if i == top else lc)
            self.heads[str(i)] = nn.Sequential(ConvBlock(cin, ch[i]), nn.Conv2d(ch[i], 2 * lc, 1))

    def dist(self, i: int, feat, z_coarser):
        h = (
            feat
            if z_coarser is None
            else torch.cat([feat, F.interpolate(z_coarser, scale_factor=2, mode="nearest")], 1)
        )
        mu, logvar = self.heads[str(i)](h).chunk(2, dim=1)
        return mu, logvar.clamp(-10.0, 10.0)


def _sample(mu, logvar):
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def _kl(mu_q, lv_q, mu_p, lv_p):
    return 0.5 * (lv_p - lv_q + (torch.exp(lv_q) + (mu_q - mu_p) ** 2) / torch.exp(lv_p) - 1.0)


class PHiSeg(AnomalyModel):
    stochastic = True

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        base_channels: int = 16,
        latent_levels: int = 5,
        latent_channels: int = 2,
        beta: float = 1.0,
    ):
        super().__init__()
        self.latent_levels = latent_levels
        self.levels = latent_levels + 2
        self.beta = beta
        ch = level_channels(base_channels, self.levels)
        self.latent_idx = list(range(self.levels - latent_levels, self.levels))
        self.prior_enc = _Encoder(in_channels, ch)
        self.post_enc = _Encoder(in_channels + out_channels, ch)
        self.prior = _LatentHeads(ch, self.latent_idx, latent_channels)
        self.post = _LatentHeads(ch, self.latent_idx, latent_channels)
        # likelihood: decode z_l at its level, combine coarse -> fine, then two levels without latents
        self.z_blocks = nn.ModuleDict({str(i): ConvBlock(latent_channels, ch[i]) for i in self.latent_idx})
        self.upconv = nn.ModuleDict({str(i): UpConv2x2(ch[i + 1], ch[i]) for i in range(self.levels - 1)})
        self.combine = nn.ModuleDict(
            {str(i): ConvBlock(2 * ch[i] if i in self.latent_idx else ch[i], ch[i]) for i in range(self.levels - 1)}
        )
        self.head = Head1x1(ch[0], out_channels)

    def _hierarchy(self, heads: _LatentHeads, feats, *, teacher=None):
        """Walk the latent levels coarse -> fine; return samples and (mu, logvar) per level.

        With ``teacher`` (the posterior's samples), each level is conditioned on the teacher's coarser
        sample instead of its own.
        """
        zs, dists = {}, {}
        z_prev = None
        for i in sorted(self.latent_idx, reverse=True):
            cond = z_prev if teacher is None else (teacher.get(i + 1))
            mu, lv = heads.dist(i, feats[i], cond)
            dists[i] = (mu, lv)
            zs[i] = _sample(mu, lv)
            z_prev = zs[i]
        return zs, dists

    def _decode(self, zs):
        top = self.levels - 1
        s = self.z_blocks[str(top)](zs[top])
        for i in range(top - 1, -1, -1):
            up = self.upconv[str(i)](s)
            parts = (up, self.z_blocks[str(i)](zs[i])) if i in zs else (up,)
            s = self.combine[str(i)].cat_forward(*parts)
        return self.head(s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One sample from the prior: logits."""
        x, (h, w) = self._pad(x)
        zs, _ = self._hierarchy(self.prior, self.prior_enc(x))
        return self._decode(zs)[..., :h, :w]

    def training_forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior sample's logits and ``beta * KL(q || p)`` per image pixel."""
        x, (h, w) = self._pad(x)
        y, _ = self._pad(y)
        zq, dq = self._hierarchy(self.post, self.post_enc(torch.cat([x, y], 1)))
        _, dp = self._hierarchy(self.prior, self.prior_enc(x), teacher=zq)
        kl = sum(_kl(*dq[i], *dp[i]).sum(dim=(1, 2, 3)) for i in self.latent_idx).mean() / float(h * w)
        return self._decode(zq)[..., :h, :w], self.beta * kl
