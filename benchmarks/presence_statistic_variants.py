"""Does the presence z-score's own-error term cap what the X0 methods can show? Each variant of
that term, paired on the same volumes (issue 13, "the presence statistic's cap").

The presence task (:mod:`mutomo.tasks.presence`, reference ``"clean"``) scores a volume by a
smooth maximum over voxels of ``z = (s - mean_ref) / sqrt(var_ref + sigma^2)``, ``s = 1 / X0``
for the X0 methods and ``sigma`` the voxel's own error. Shipped: ``sigma = s sigma(ln X0)``, the
error at the voxel's own estimate, which caps a dense voxel's z near ``1 / sigma(ln X0)``.
Variants of ``sigma`` (ASR and BCA report no error: every variant leaves them unchanged):

* ``shipped``: ``s sigma(ln X0)``;
* ``none``: no own error (the reference spread alone, with its floor);
* ``null``: the error under the null hypothesis, ``mean_ref sigma(ln X0)`` (a voxel's relative
  error depends on its muons, not on its value);
* ``null_or_own``: ``null`` where some reference measured the voxel, else ``shipped``;
* ``min_null_own``: ``min(null, shipped)`` where some reference measured it, else ``shipped``;
* ``null_allref``: ``min(null, shipped)`` only where every reference measured it.

Input: the per-volume maps and errors of every cell of ``reco_methods_table.py``, written by
``--save-outputs`` (the same 120 test and 24 reference volumes per scene, the same muons). Each
cell: ROC AUC with DeLong's error, detection efficiency at 1 % false alarm, and the paired AUC
difference to the first variant (DeLong).

Usage::

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/reco_methods_table.py \\
        --momenta true flux_mean range_mean marginal posterior --save-outputs outputs.npz
    PYTHONPATH=src python benchmarks/presence_statistic_variants.py outputs.npz

Results: ``benchmarks/results/presence_statistic_variants.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mutomo.tasks.metrics import efficiency_at_false_alarm, paired_auc_difference, roc_auc
from mutomo.tasks.presence import reference_scores, split_presence

VARIANTS = ("shipped", "none", "null", "null_or_own", "min_null_own", "null_allref")


def own_error(variant: str, maps: Tensor, sigma: Tensor, reference: Tensor) -> Tensor | None:
    """The own-error term ``(volume, voxel)`` of ``variant`` (module docstring)."""
    mean = reference.mean(0)
    relative = torch.where(maps > 0, sigma / maps.clamp(min=1e-30), torch.zeros_like(maps))  # sigma(ln X0)
    under_null = mean * relative
    if variant == "shipped":
        return sigma
    if variant == "none":
        return None
    if variant == "null":
        return under_null
    if variant == "null_or_own":
        return torch.where(mean > 0, under_null, sigma)
    if variant == "min_null_own":
        return torch.where(mean > 0, torch.minimum(under_null, sigma), sigma)
    if variant == "null_allref":
        return torch.where((reference > 0).all(0), torch.minimum(under_null, sigma), sigma)
    raise ValueError(f"unknown variant {variant!r}; allowed: {', '.join(VARIANTS)}")


def scores(test: np.ndarray, reference: np.ndarray, variant: str) -> np.ndarray:
    """Per-volume presence scores of the test outputs against the reference outputs: the
    presence task's :func:`reference_scores` with ``variant``'s own-error term."""
    blocks = split_presence(torch.from_numpy(test.astype(np.float64)))
    maps, sigma = blocks.maps.score, blocks.maps.sigma
    ref_maps = split_presence(torch.from_numpy(reference.astype(np.float64))).maps.score
    if not bool((sigma > 0).any()):  # ASR, BCA: no own error
        return reference_scores(maps, ref_maps).numpy()
    return reference_scores(maps, ref_maps, own_error(variant, maps, sigma, ref_maps)).numpy()


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("outputs", type=Path, help="the .npz of reco_methods_table.py --save-outputs")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    args = parser.parse_args(argv)
    data = np.load(args.outputs)
    lines = [f"Command: `python benchmarks/presence_statistic_variants.py {' '.join(sys.argv[1:])}`", ""]
    for scene in sorted({k.split("/")[0] for k in data}):
        labels = data[f"{scene}/labels"].astype(bool)
        cells = sorted({tuple(k.split("/")[2:]) for k in data if k.startswith(f"{scene}/test/")})
        lines += [
            f"### {scene}: {labels.size} test volumes ({int(labels.sum())} with the object)",
            "",
            "AUC ± DeLong error, detection efficiency at 1 % false alarm (eff), and the paired AUC "
            f"difference to `{args.variants[0]}` (Δ).",
            "",
            "| method | momentum | " + " | ".join(args.variants) + " |",
            "|---|---|" + "---:|" * len(args.variants),
        ]
        for m, p in cells:
            test, reference = data[f"{scene}/test/{m}/{p}"], data[f"{scene}/references/{m}/{p}"]
            base = scores(test, reference, args.variants[0])
            row = []
            for v in args.variants:
                s = scores(test, reference, v)
                auc = roc_auc(s, labels)
                text = f"{auc.value:.3f} ± {auc.error:.3f}, eff {efficiency_at_false_alarm(s, labels, 0.01):.2f}"
                if v != args.variants[0]:
                    delta = paired_auc_difference(s, base, labels)
                    text += f", Δ {delta.value:+.3f} ± {delta.error:.3f}"
                row.append(text)
            lines.append(f"| {m} | {p} | " + " | ".join(row) + " |")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    return text


if __name__ == "__main__":
    main()
