"""Multiple scattering against Geant4 samples, the Highland formula and exact answers."""

import math

import h5py
import numpy as np
import pytest
import torch
from scipy.optimize import brentq
from scipy.stats import norm

from mutomo.materials import get_material
from mutomo.muons import FixedSource, GenerationPlane
from mutomo.units import MUON_MASS
from mutomo.volume import PassiveVolume, highland_variance, position_at_z, propagate_volume
from mutomo.volume.scattering import ScatterState, draw_scatter_randoms, scatter_step

G4_MATERIALS = {"aluminium": "aluminium", "iron": "iron", "lead": "lead", "x0_0.116577": "silicon_dioxide"}


def gaussian_width_central_98(angles: np.ndarray) -> float:
    """sigma of a Gaussian fitted to the central 98 % (truncated-normal moment match)."""
    lo, hi = np.quantile(angles, [0.01, 0.99])
    core = angles[(angles >= lo) & (angles <= hi)]
    half, var = (hi - lo) / 2, core.var()

    def mismatch(sigma):
        a = half / sigma
        return sigma**2 * (1 - 2 * a * norm.pdf(a) / (2 * norm.cdf(a) - 1)) - var

    return brentq(mismatch, 1e-3 * math.sqrt(var), 100 * math.sqrt(var))


def projected_angles(material, thickness, momentum, step, n=40_000, seed=0, x0=None):
    volume = PassiveVolume.uniform(material, (1.0, 1.0, thickness), (1.0, 1.0, thickness), dtype=torch.float64)
    if x0 is not None:
        volume.x0.fill_(x0)
    gen = torch.Generator().manual_seed(seed)
    muons = FixedSource(GenerationPlane(thickness + 0.1, (0.4, 0.6), (0.4, 0.6)), momentum).sample(
        n, gen, dtype=torch.float64
    )
    out = propagate_volume(muons, volume, step_length=step, generator=gen, energy_loss=False)
    displacement = (out.position - position_at_z(muons, volume.z_low))[:, 0].numpy()
    return displacement, torch.atan2(out.direction[:, 0], -out.direction[:, 2]).numpy()


def highland(material, thickness, momentum):
    one = torch.ones(1, dtype=torch.float64)
    beta = momentum / math.hypot(momentum, MUON_MASS)
    t = thickness / get_material(material).x0
    return float(highland_variance(one * t, one * momentum, one * beta).sqrt())


# PDG Review eq. 34.15: Highland's formula is accurate to 11 % for 1e-3 < x/X0 < 100 (against
# Molière's point-nucleus theory), so it is a reference only there. Thick heavy targets are
# narrower than point-nucleus theory: the core reaches the angle at which the nucleus's size cuts
# Rutherford scattering off (1 m of lead, 178 X0: Molière with the nuclear size is 7 % under
# Highland); tests/physics/test_moliere.py compares with that theory.
HIGHLAND_MAX_X0 = 100.0
CASES = [
    (material, thickness, momentum)
    for material in ("iron", "lead", "water")
    for thickness in (0.001, 0.01, 0.1, 1.0)
    for momentum in (1.0, 10.0, 100.0)
]


@pytest.mark.parametrize("material, thickness, momentum", CASES)
def test_core_width_independent_of_step_and_close_to_highland(material, thickness, momentum):
    """Slabs from 1 mm to 1 m cut into steps from 1 mm to 10 cm (up to 1000 steps): the 98 %
    Gaussian-fit width varies < 3 %, and is within 11 % of Highland on the total thickness where
    Highland holds to 11 % (up to 100 X0)."""
    steps = sorted({s for s in (0.1, 0.01, 0.001) if s <= thickness and thickness / s <= 1000} | {min(thickness, 0.1)})
    widths = [gaussian_width_central_98(projected_angles(material, thickness, momentum, s)[1]) for s in steps]
    assert max(widths) / min(widths) - 1 < 0.03, widths
    if thickness / get_material(material).x0 <= HIGHLAND_MAX_X0:
        for w in widths:
            assert w == pytest.approx(highland(material, thickness, momentum), rel=0.11)


def test_per_step_highland_would_fail():
    """The reason for the cumulative scheme: summing per-step Highland variances over 100 steps
    of 1 cm of iron underestimates the thick-target width by more than 8 %."""
    one = torch.ones(1, dtype=torch.float64)
    x0 = get_material("iron").x0
    per_step = math.sqrt(100 * float(highland_variance(one * 0.01 / x0, one * 10, one)))
    assert per_step / highland("iron", 1.0, 10.0) < 0.92


def geant4_reference(path):
    """q68/q95/q99 of |angle| per material for the samples from 1 GeV up, each a momentum *bin*.

    The file's ``momentum_gev`` are the lower edges of the momentum bins the samples stand for:
    TomOpt, whose file this is, serves a muon of momentum p from the sample of the bin
    (edge_i, edge_i+1] (``torch.bucketize`` on the edges in tomopt/volume/scatter_model.py).
    Read at their labels, the samples' q68 * p jumps by ~12 % at 1, 10 and 100 GeV, where the
    bins are widest; read as bins, q68 * p_eff (1 / p_eff the bin's mean of 1/p) is flat
    (:func:`test_geant4_samples_are_momentum_bins`). Momenta are taken uniform in the bin
    (uniform in ln p instead changes 1/p_eff by at most 1.3 %, in the 1-1.5 GeV bin). The last
    sample (400 GeV) has no upper edge and is left out. Points whose q68 * p_eff is more than
    7 % off their material's median are flagged as artefacts of the file: 2 of 124 (lead 6-7
    and 9-10 GeV)."""
    with h5py.File(path) as f:
        edges = f["momentum_gev"][:]
        out = {}
        for g4 in G4_MATERIALS:
            q = np.quantile(np.abs(f[g4]["dtheta_rad"][:-1]), [0.68, 0.95, 0.99], axis=1).T
            lo, hi = edges[:-1], edges[1:]
            keep = lo >= 1
            scaled = q[:, 0] * bin_momentum(lo, hi)
            flagged = np.abs(scaled / np.median(scaled[keep]) - 1) > 0.07
            out[g4] = (float(f[g4].attrs["x0_m"]), lo, hi, q, keep, flagged)
    return out


def bin_momentum(lo, hi):
    """``1 / <1/p>`` for p uniform in [lo, hi]: the momentum whose 1/p scattering equals the bin's."""
    return (hi - lo) / np.log(hi / lo)


def model_quantiles(material, x0, p_lo, p_hi, n=40_000, seed=0):
    """1 cm slab in one step, as the Geant4 samples were made; momenta uniform in [p_lo, p_hi)."""
    m = get_material(material)
    full = lambda v: torch.full((n,), float(v), dtype=torch.float64)  # noqa: E731
    gen = torch.Generator().manual_seed(seed)
    p = p_lo + (p_hi - p_lo) * torch.rand(n, generator=gen, dtype=torch.float64)
    beta = p / torch.sqrt(p**2 + MUON_MASS**2)
    direction = (full(0.0), full(0.0), full(-1.0))
    randoms = draw_scatter_randoms(n, gen, torch.float64, None)
    new_dir, _, _ = scatter_step(
        direction,
        p,
        beta,
        ScatterState.zeros(p),
        full(0.01),
        full(x0),
        full(m.tail_x0),
        full(m.screening_p2),
        full(m.nuclear_p),
        randoms,
    )
    return np.quantile(np.abs(torch.atan2(new_dir[0], -new_dir[2]).numpy()), [0.68, 0.95, 0.99])


def test_geant4_samples_are_momentum_bins(geant4_file):
    """Multiple scattering scales as 1/p, so q68 * p is the same for every sample if each carries
    the right momentum. Across the steps of the bin edges at 1, 10 and 100 GeV (0.8 -> 1 -> 1.5,
    9 -> 10 -> 15, 90 -> 100 -> 150), q68 * p read at the labels drops by 13-17 % on average for
    every material; read at the bins' 1/<1/p>, it changes by under 5 % (0-3 % measured; one
    sample's q68 is good to ~1 % with 10,000 muons)."""
    with h5py.File(geant4_file) as f:
        edges = f["momentum_gev"][:]
        lo, hi = edges[:-1], edges[1:]
        steps = [i for i in range(1, len(lo)) if lo[i] in (1.0, 10.0, 100.0)]
        for g4 in G4_MATERIALS:
            q68 = np.quantile(np.abs(f[g4]["dtheta_rad"][:-1]), 0.68, axis=1)
            for p, lower, upper in ((lo, -0.25, -0.10), (bin_momentum(lo, hi), -0.05, 0.05)):
                log_qp = np.log(q68 * p)
                jump = np.mean([log_qp[i] - log_qp[i - 1] for i in steps])
                assert lower < jump < upper, (g4, jump)


def test_quantiles_match_geant4(geant4_file):
    """68/95 % quantiles of |angle| within 10 %, 99 % within 15 %, in every momentum bin from
    1 GeV of every material with X0 < 1 m, except the flagged reference points (at most 1 in 5).

    Known misses (2 of 122 points): iron 8-9 GeV (68 % quantile +11 %, a sample whose q68 * p_eff
    is itself 7 % under its material's median) and lead 3.5-4 GeV (95/99 % quantiles -13/-17 %).
    No more than those two may fail."""
    reference = geant4_reference(geant4_file)
    failures, n_checked, n_flagged = [], 0, 0
    for g4, material in G4_MATERIALS.items():
        x0, lo, hi, q, keep, flagged = reference[g4]
        n_flagged += int((keep & flagged).sum())
        for i in np.nonzero(keep & ~flagged)[0]:
            rel = model_quantiles(material, x0, float(lo[i]), float(hi[i]), seed=int(i)) / q[i] - 1
            n_checked += 1
            if abs(rel[0]) > 0.10 or abs(rel[1]) > 0.10 or abs(rel[2]) > 0.15:
                failures.append((g4, float(lo[i]), np.round(rel, 3).tolist()))
    assert n_flagged <= 0.2 * (n_flagged + n_checked)
    assert len(failures) <= 2, failures


def test_model_follows_z_like_geant4(geant4_file):
    """Averaged over momenta, each material's q68 agrees with Geant4 within 5 % -- the Z
    dependence comes from the composition, not from per-material tuning."""
    reference = geant4_reference(geant4_file)
    for g4, material in G4_MATERIALS.items():
        x0, lo, hi, q, keep, flagged = reference[g4]
        sel = np.nonzero(keep & ~flagged)[0][::3]
        ratio = [model_quantiles(material, x0, float(lo[i]), float(hi[i]), seed=int(i))[0] / q[i, 0] for i in sel]
        assert np.mean(ratio) == pytest.approx(1.0, abs=0.05), (g4, np.mean(ratio))


def test_straight_lines_when_x0_is_infinite():
    """No material, no deflection: every muon leaves on its incoming line, to rounding."""
    displacement, angles = projected_angles("lead", 0.5, 1.0, 0.01, n=500, x0=1e30)
    assert np.abs(angles).max() < 1e-12 and np.abs(displacement).max() < 1e-12


def test_displacement_angle_correlation():
    """PDG eq. 34.21: y_rms = x theta0 / sqrt(3) and correlation sqrt(3)/2 for the Gaussian part;
    the single-scattering tail keeps the correlation close (tails displace ~x theta / 2)."""
    y, angles = projected_angles("iron", 0.1, 10.0, 0.01, n=60_000)
    core = np.abs(angles) < 3 * angles.std()
    rho = np.corrcoef(y[core], angles[core])[0, 1]
    assert rho == pytest.approx(math.sqrt(3) / 2, abs=0.05)
    assert y[core].std() == pytest.approx(0.1 * angles[core].std() / math.sqrt(3), rel=0.08)
