"""Measures of synthetic data and of the label-text embedding pool, for the ablation studies
(NAYER, Tran et al., CVPR 2024, Tables 4, 6, 7).

- ``feature_diversity``: how different the images synthesised for the same class are.
- ``convergence_epoch``: the first epoch whose synthesis batches the teacher classifies as their
  pseudo labels with cross-entropy below a threshold (Table 4's "epochs to CE < 0.1").
- ``lte_nearest_classes``: the inter-class structure of the LTE pool.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["convergence_epoch", "feature_diversity", "lte_nearest_classes"]


def feature_diversity(features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean within-class pairwise cosine distance of teacher features.

        D = mean over classes c with n_c >= 2 of  1 / (n_c (n_c - 1)) * sum_{i != j, y_i = y_j = c} (1 - cos(f_i, f_j))

    f are the teacher's penultimate features (global-average-pooled, before the classifier) of
    the synthetic images. Identical images give D = 0; D grows as the images of a class spread out
    in the teacher's feature space (at most 2, for opposite directions; about 1 for unrelated
    directions). Why this and not the paper's unnamed score: mode collapse in data-free synthesis
    is *within* a class (a generator fed only with e_y draws one image per class), so the score
    compares images of the same class only; the teacher's feature space measures differences the
    teacher (and hence the student's KD signal) can see, rather than pixel noise, and needs no
    extra network (LPIPS) or data. In the spirit of the feature-space diversity scores of CMI
    (Fang et al., IJCAI 2021) and of the paper's Table 4.

    Args:
        features: (N, F) float features.
        labels: (N,) int64 class of each row.
    Returns:
        float32 scalar tensor; 0 when no class has two samples.
    """
    f = F.normalize(features.float(), dim=1)
    total = features.new_zeros((), dtype=torch.float32)
    count = 0
    for c in labels.unique():
        fc = f[labels == c]
        n = fc.shape[0]
        if n < 2:
            continue
        sim = fc @ fc.T
        # sum over i != j of (1 - cos) = n(n-1) - (sum of all cos - n)
        # (clamped: rounding can take identical rows a hair below 0)
        total = total + ((n * (n - 1) - (sim.sum() - sim.diagonal().sum())) / (n * (n - 1))).clamp_min(0)
        count += 1
    return total / max(count, 1)


def convergence_epoch(records: list[dict], threshold: float = 0.1, key: str = "synth_ce_min") -> int | None:
    """First epoch whose record has ``key`` (by default the lowest final-step teacher CE over the
    epoch's synthesis batches) below ``threshold``; None when no epoch gets there."""
    for r in records:
        if r.get(key) is not None and r[key] < threshold:
            return int(r["epoch"])
    return None


def lte_nearest_classes(lte: torch.Tensor, class_names: list[str], k: int = 3) -> dict[str, list[list]]:
    """For every class, its ``k`` nearest other classes in the LTE pool by cosine similarity.

    Args:
        lte: (K, D) embeddings, row i for class_names[i].
        class_names: K names.
        k: neighbours per class (capped at K - 1).
    Returns:
        {name: [[neighbour name, cosine similarity rounded to 4 digits], ...]} in decreasing similarity.
    Raises:
        ValueError: lte rows and names differ in number.
    """
    if lte.shape[0] != len(class_names):
        raise ValueError(f"lte has {lte.shape[0]} rows for {len(class_names)} class names")
    e = F.normalize(lte.float(), dim=1)
    sim = e @ e.T
    sim.fill_diagonal_(-float("inf"))
    k = min(k, len(class_names) - 1)
    values, index = sim.topk(k, dim=1)
    return {
        name: [[class_names[j], round(float(v), 4)] for v, j in zip(values[i], index[i].tolist())]
        for i, name in enumerate(class_names)
    }
