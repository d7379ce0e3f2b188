"""Probabilistic Poisson Image Interpolation (P-PII), the paper's section 2.

Per image: ``n ~ U{n_anomalies}`` anomalies and ``K ~ U{n_raters}`` raters.  Each anomaly takes a patch
(side ``U[patch_size]`` of the extent per axis) from a source -- another image of the batch (pairwise)
or the image itself -- at one location and blends it into the target at another location, with the
source gradients up-scaled by ``s ~ U[gradient_scale)`` (mixed with the target gradients by default).
Inside each patch K circular rater masks (radius and centre from normal distributions, bounded to the
patch) give K versions of the anomaly, each blended from the original target by a DST Poisson solve over
the patch box.  Target boxes never overlap, so every blend is independent and the batch renders in a few
batched solves.  Outputs: the mean over raters (training image), the label
``clip(label_scale * |target - mean|, 0, 1)`` and the variance over raters (uncertainty map).
"""

from __future__ import annotations

import numpy as np

from .base import AnomalySpec, Synthesizer, boxes_overlap, render_poisson, sample_raters, sample_size, sample_start


class PPII(Synthesizer):
    method = "ppii"

    def plan_image(self, index, spatial, n_images, rng):
        cfg = self.config
        n = int(rng.integers(cfg.n_anomalies[0], cfg.n_anomalies[1] + 1))
        k = int(rng.integers(cfg.n_raters[0], cfg.n_raters[1] + 1))
        specs: list[AnomalySpec] = []
        for _ in range(n):
            src = self._source_index(index, n_images, rng)
            size = sample_size(spatial, cfg, rng)
            placed = None
            for _try in range(cfg.max_tries):
                t_start = sample_start(spatial, size, cfg, rng)
                if not any(boxes_overlap(t_start, s.target_start, size, s.size) for s in specs):
                    placed = t_start
                    break
            if placed is None:
                continue  # no free room: fewer anomalies (recorded in the plan)
            s_start = sample_start(spatial, size, cfg, rng)
            for _try in range(cfg.max_tries):
                if src != index or not boxes_overlap(s_start, placed, size, size):
                    break  # from the same image the source patch must come from elsewhere
                s_start = sample_start(spatial, size, cfg, rng)
            scale = float(rng.uniform(cfg.gradient_scale[0], cfg.gradient_scale[1]))
            centres, radii = sample_raters(size, k, cfg, rng)
            specs.append(AnomalySpec(index, src, placed, s_start, size, scale, None, centres, radii))
        return specs

    def render(self, images, plan, n_out):
        mean, var = render_poisson(images, plan, n_out, self.config)
        diff = (images[:n_out] - mean).abs() if hasattr(mean, "abs") else np.abs(images[:n_out] - mean)
        label = diff * self.config.label_scale
        label = label.clamp(0.0, 1.0) if hasattr(label, "clamp") else np.clip(label, 0.0, 1.0)
        return mean, label, var
