"""Maximum-likelihood / expectation-maximisation (ML/EM) reconstruction of the scattering density.

Schultz et al., "Statistical reconstruction for cosmic ray muon tomography", IEEE Trans. Image
Process. 16 (2007) 1985 (below: S07). The section numbers cited are S07's; the formulas are
derived here in full, so that each step can be checked without the paper (the paper's own
equation numbers could not be checked against its text here, so sections are cited).

**Scattering density.** S07 (Sec. II) writes the projected scattering width of a muon of
momentum ``p`` after a path ``L`` as ``sigma^2 = lambda L p_r^2`` with the scattering density
``lambda = (15 MeV / p0)^2 / X0``, a nominal momentum ``p0`` (3 GeV/c) and ``p_r = p0 / p``. Here
the constant is Highland's ``E0 = 13.6 MeV`` (PDG eq. 34.15 without its log term, i.e. the
Rossi-Greisen form) and ``beta p`` replaces ``p``:

    lambda_j = (E0 / p0)^2 / X0_j,        p_r,i^2 = (p0 / (beta_i p_i))^2,

so ``lambda_j p_r,i^2 = c_i rho_j`` with ``c_i = (E0 / (beta_i p_i))^2`` (the muon's momenta in
:attr:`ScatterData.momentum <mutomo.reco.ScatterData>`) and ``rho_j = 1 / X0_j`` (m^-1). The
algorithm iterates on ``rho``; ``lambda`` is ``rho`` times the constant ``(E0 / p0)^2``
(:attr:`MLEMResult.density`). Highland's log term makes the width non-additive over voxels, so
the model cannot carry it; :class:`MaximumLikelihoodEM` corrects the X0 it reports afterwards
(``log_term``, below).

**Observations.** For each muon the two tracks give, in the frame of the incoming direction,
the deflection angle and the lateral displacement in two orthogonal transverse directions
``u, v`` (S07 Sec. II: ``(Delta theta, Delta x)`` per projection, the displacement measured
perpendicular to the incoming track at the exit plane). With slopes ``t = (t_x, t_y)``
(``dx/dz``, ``dy/dz``), ``n = sqrt(1 + t_x^2 + t_y^2)``, ``u = (1, 0, -t_x) / sqrt(1 + t_x^2)``
and ``v = (t_x, t_y, 1) / n x u``, a small rotation ``a_u u + a_v v`` of the direction of travel
(downwards) changes the slopes by ``Delta t = -n G a``, and a transverse offset ``Delta``
moves the crossing of the exit plane ``z_low`` by ``delta = G Delta``, where

    G = [[sqrt(1 + t_x^2), 0], [t_x t_y / sqrt(1 + t_x^2), n / sqrt(1 + t_x^2)]]

holds the slope-space images of ``u`` and ``v`` (the minus sign: a muon travels towards -z, so
a kick that turns it towards +x lowers ``dx/dz``). So each muon's data are
``D_i = ((-G^-1 Delta t / n)_k, (G^-1 delta)_k)`` for ``k = u, v``: angles (rad) and
displacements (m) whose scattering parts are independent between ``u`` and ``v``, with equal
variances and a positive angle-displacement correlation, for any direction. (S07 treats x and y
as independent, which holds for vertical muons; the x and y slope kicks of an oblique muon
correlate by ``t_x t_y / sqrt((1 + t_x^2) (1 + t_y^2))``.) ``Delta t`` is the slope change,
``delta`` the outgoing track's position at ``z_low`` minus the incoming track's extrapolation
there. The measurement covariance ``E_i`` (4 x 4) of ``D_i`` follows from the two fits'
``(x, y, t_x, t_y)`` covariances by the Jacobian of this map at fixed frame (S07 Sec. V adds
such a term to the covariance).

**Covariance.** Scattering in voxel ``j`` over a path length ``L_ij``, followed by a straight
path ``T_ij`` to the exit, gives (Fermi-Eyges moments of independent kicks: angle variance
``int ds``, angle-offset covariance ``int s ds``, offset variance ``int s^2 ds`` over the
remaining distance ``s`` in ``[T, T + L]``; S07 Sec. III; for ``T = 0`` these are the PDG's
``y_rms = L theta0 / sqrt(3)`` and angle-offset correlation ``sqrt(3) / 2``, PDG Review,
"Passage of particles through matter", the equations after eq. 34.15)

    W_ij = [[L, L^2 / 2 + L T], [L^2 / 2 + L T, L^3 / 3 + L^2 T + L T^2]],
    Sigma_i = c_i sum_j rho_j (I_2 (x) W_ij) + E_i,

a 4 x 4 matrix with one 2 x 2 block per transverse direction.

**Path.** The muon's path through the voxels runs from its entry point (incoming track, top
face) to the PoCA and on to its exit point (outgoing track, bottom face) (``path="poca"``, the
default; :func:`muon_path` says how a PoCA outside the volume is handled), or straight from
entry to exit (``path="straight"``). The PoCA path follows where a single hard scatter
actually happened (which is where a high-Z object shows up), the straight line splits the bend
between every voxel in between; the PoCA path is what later work of the same group and most
implementations use. The path lengths are computed by intersecting each straight segment with
every grid plane (Siddon, Med. Phys. 12 (1985) 252: the plane-crossing parameters of the three axes are sorted,
consecutive ones bound the pieces, a piece's voxel is that of its midpoint), vectorised over
muons with no loop; pieces of one muon in one voxel that follow each other (the PoCA voxel) are
merged. The result is a sparse list of ``(muon, voxel, L, T)`` entries, :class:`PathLengths`.

**Likelihood and EM.** With the muon weights ``w_i`` as likelihood weights,

    l(rho) = sum_i w_i [-1/2 ln det Sigma_i - 1/2 D_i^T Sigma_i^-1 D_i - 2 ln(2 pi)]

(S07 Sec. III, with both transverse directions). The complete data are the contributions
``H_ij ~ N(0, rho_j W'_ij)``, ``W'_ij = c_i (I_2 (x) W_ij)``, of every voxel on a muon's path
(plus the measurement error, whose covariance is known); ``D_i = sum_j H_ij + error`` (S07
Sec. IV). E-step: ``E[H H^T | D] = rho W' - rho W' Sigma^-1 rho W' + rho W' Sigma^-1 D D^T
Sigma^-1 rho W'``; M-step: the weighted complete-data likelihood is maximised by
``rho_j = sum_i w_i E[H_ij^T W'_ij^-1 H_ij | D_i] / (4 sum_i w_i)`` over the muons crossing
voxel ``j`` (4 = dimension of ``H``). Together (S07 Sec. IV's update, with ``2 -> 4`` for both
directions at once and ``M_j`` the weighted number of muons in voxel ``j``):

    S_ij = 4 rho_j + rho_j^2 [D_i^T Sigma_i^-1 W'_ij Sigma_i^-1 D_i - tr(Sigma_i^-1 W'_ij)],
    rho_j <- sum_i w_i S_ij / (4 M_j) = rho_j + rho_j^2 sum_i w_i tr((Q_i - P_i) W'_ij) / (4 M_j),

with ``Q_i = Sigma^-1 D D^T Sigma^-1`` and ``P_i = Sigma^-1``. ``S_ij >= 0`` exactly (it is a
conditional expectation of a non-negative quantity), so the density stays positive and, being
an EM step, the likelihood never decreases (Dempster, Laird & Rubin, J. R. Stat. Soc. B 39
(1977) 1). A voxel no muon crosses keeps its initial value. The fixed number of iterations is
unrolled, so the map is differentiable in everything the data depend on.

**X0 and Highland's log term.** The EM estimates an effective ``rho_j`` that absorbs each
muon's Highland factor ``(1 + 0.038 ln t_i)^2`` (``t_i`` its total thickness in X0; PDG eq.
34.15, Lynch & Dahl, NIM B58 (1991) 6). With ``log_term=True`` the reported ``1/X0_j`` is
``rho_j / cbar_j``: each muon's fitted raw thickness ``sum_j L_ij rho_j`` is Highland's
``g(t_i) = t_i (1 + 0.038 ln t_i)^2``, inverted for ``t_i`` (beta = 1), and ``cbar_j`` is the
path-weighted mean of ``g(t_i) / t_i`` over the muons crossing voxel ``j``.

**Uncertainty.** ``1 / sqrt(I_jj)`` with the Fisher information
``I_jj = 1/2 sum_i w_i tr(Sigma_i^-1 W'_ij Sigma_i^-1 W'_ij)`` (Gaussian model, covariance
linear in ``rho``): the Cramer-Rao error of ``rho_j`` when the other voxels are known. Voxels
share muons, so the marginal error is larger; it is exact for a single voxel.

**Over-relaxation.** Where many voxels share the muons the EM creeps (a 10 cm uranium cube in
1 m^3 of concrete: 1/X0 = 20 m^-1 after 20 steps, 52 after 60, truth 315). Each iteration
therefore tries the EM step taken ``omega`` times in ``ln rho``, ``rho (rho_EM / rho)^omega``,
and keeps it only if the likelihood did not fall, else the EM point (``acceleration`` in
:class:`MaximumLikelihoodEM`; ``omega`` doubles after each kept step, up to its cap, and
restarts at 1 after a refused one; a step-size search along the EM direction in the spirit of
Lange, Statistica Sinica 5 (1995) 1 and of SQUAREM, Varadhan & Roland, Scand. J. Stat. 35 (2008)
335, made monotone by the check). The likelihood still rises at every iteration.

**Unknown momenta.** Without each muon's momentum, it becomes a hidden class ``k`` on a grid
``p_k`` with a prior ``pi_ik`` (the flux spectrum at the muon's zenith above the range cut:
:meth:`mutomo.reco.ExpectedMomentum.prior`), and the likelihood is the mixture
``sum_i w_i ln sum_k pi_ik N(D_i; 0, Sigma_ik)``, ``Sigma_ik = c_k sum_j rho_j (I_2 (x) W_ij) +
E_i``. The complete data are then ``(k, H)``: the E-step adds the class posteriors
``r_ik = pi_ik N(D_i; 0, Sigma_ik) / sum_k (...)`` at the current density, and the M-step is
the update above with each (muon, class) pair weighted by ``w_i r_ik`` (still a ratio over
``M_j``, as ``sum_k r_ik = 1``). Implemented by expanding every muon into its ``K`` classes
(:func:`with_momentum_classes`). A muon deflected much is read as slow only as far as the
density map, which every other muon constrains, fails to explain it, which is what the single
momentum of :class:`~mutomo.reco.ExpectedMomentum` with a nominal map could not do (it
explained a dense cube away). The error comes from Louis' observed information
(:func:`fisher_diagonal`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, is_dataclass, replace
from typing import Any, Literal

import torch
import torch.utils.checkpoint
from torch import Tensor

from mutomo.errors import MutomoError
from mutomo.materials import get_material
from mutomo.reco.maps import ScatterData, VoxelMap
from mutomo.reco.momentum import MomentumPrior
from mutomo.reco.track_fit import Tracks
from mutomo.units import HIGHLAND_E0, MUON_MASS
from mutomo.volume.grid import PassiveVolume
from mutomo.volume.scattering import highland_inverse

# S07's nominal momentum (GeV/c) in the scattering density lambda = (E0 / p0)^2 / X0.
NOMINAL_MOMENTUM = 3.0
# Segments shorter than this along an axis (m) are taken as parallel to that axis's planes.
PARALLEL = 1e-12
# A density never falls below this fraction of its previous value in one step (S_ij >= 0 makes
# the update non-negative exactly; the floor only guards rounding).
MAX_MEASUREMENT_VARIANCE = 1.0
"""Largest measurement variance (rad^2 for angles, m^2 for displacements) of a muon ML/EM uses."""
POSITIVITY_FLOOR = 1e-6
# Largest change of ln rho of a voxel beyond its EM step in one over-relaxed step (a factor e^3 = 20).
MAX_LOG_STEP = 3.0
LOG_2PI = math.log(2 * math.pi)

Path = Literal["poca", "straight"]


@dataclass(frozen=True)
class PathLengths:
    """Sparse muon-by-voxel path lengths: one entry per (muon, voxel) crossed.

    Attributes:
        muon: ``(E,)`` long muon index.
        voxel: ``(E,)`` long flat voxel index, ``(ix * ny + iy) * nz + iz`` (plus
            ``batch * nx * ny * nz`` for batched data, see :meth:`MaximumLikelihoodEM.problem`).
        length: ``(E,)`` path length ``L`` in the voxel (m).
        tail: ``(E,)`` path length ``T`` from leaving the voxel to leaving the volume (m).
        n_muons: number of muons (rows).
        n_voxels: number of voxels (columns).
    """

    muon: Tensor
    voxel: Tensor
    length: Tensor
    tail: Tensor
    n_muons: int
    n_voxels: int

    def weight_matrices(self) -> Tensor:
        """``(3, E)`` the distinct entries ``(W_00, W_01, W_11)`` of each ``W_ij`` (module
        docstring): ``L``, ``L^2 / 2 + L T`` (m^2) and ``L^3 / 3 + L^2 T + L T^2`` (m^3)."""
        L, T = self.length, self.tail
        return torch.stack([L, L * (0.5 * L + T), L * (L * L / 3 + L * T + T * T)])

    def to_sparse(self) -> Tensor:
        """The path lengths as a coalesced sparse COO ``(n_muons, n_voxels)`` matrix (m)."""
        index = torch.stack([self.muon, self.voxel])
        shape = (self.n_muons, self.n_voxels)
        return torch.sparse_coo_tensor(index, self.length, shape, check_invariants=True).coalesce()


def path_lengths(vertices: Tensor, volume: PassiveVolume) -> PathLengths:
    """Path lengths of polylines through the voxels of ``volume`` (Siddon's method, vectorised).

    Each segment ``P_k -> P_k+1`` is cut at every grid plane: the crossing parameters
    ``s = (plane - P_k) / (P_k+1 - P_k)`` of the three axes, clamped to [0, 1] and sorted, bound
    pieces whose voxel is that of their midpoint. Pieces outside the grid are dropped, and
    consecutive pieces of a muon in the same voxel are merged. Cost: a sort of
    ``nx + ny + nz + 5`` numbers per segment; no loop over muons or voxels. Differentiable in the
    vertices (the lengths are continuous in them); segments parallel to a plane or of zero length
    give finite values and gradients.

    Args:
        vertices: ``(mu, P, 3)`` the ``P >= 2`` vertices of each muon's path (m), in order.
        volume: the voxel grid.

    Returns:
        :class:`PathLengths` with entries ordered by muon, then along the path.

    Example:
        >>> import torch
        >>> vol = PassiveVolume.uniform("water", (1.0, 1.0, 0.4), 0.1, dtype=torch.float64)
        >>> path = torch.tensor([[[0.55, 0.55, 0.4], [0.55, 0.55, 0.0]]], dtype=torch.float64)
        >>> p = path_lengths(path, vol)
        >>> p.voxel.tolist()  # voxel (5, 5) of the four layers, from the top
        [223, 222, 221, 220]
        >>> [round(v, 12) for v in p.length.tolist()], [round(v, 12) for v in p.tail.tolist()]
        ([0.1, 0.1, 0.1, 0.1], [0.3, 0.2, 0.1, 0.0])
    """
    if vertices.dim() != 3 or vertices.shape[1] < 2 or vertices.shape[2] != 3:
        raise MutomoError(f"vertices must have shape (mu, P >= 2, 3); got {tuple(vertices.shape)}")
    mu = vertices.shape[0]
    dtype, device = vertices.dtype, vertices.device
    shape = volume.shape
    origin = torch.tensor(volume.origin, dtype=dtype, device=device)
    size = torch.tensor(volume.voxel_size, dtype=dtype, device=device)
    start, delta = vertices[:, :-1], vertices[:, 1:] - vertices[:, :-1]  # (mu, S, 3)
    params = [torch.zeros_like(start[..., :1]), torch.ones_like(start[..., :1])]
    for axis in range(3):
        planes = origin[axis] + torch.arange(shape[axis] + 1, dtype=dtype, device=device) * size[axis]
        d = delta[..., axis : axis + 1]
        moving = d.abs() > PARALLEL
        # NaN-safe division: a segment parallel to the planes never crosses them (s = 0, a piece of length 0).
        s = (planes - start[..., axis : axis + 1]) / torch.where(moving, d, torch.ones_like(d))
        params.append(torch.where(moving, s, torch.zeros_like(s)).clamp(0.0, 1.0))
    s = torch.cat(params, -1).sort(-1).values  # (mu, S, K)
    s0, s1 = s[..., :-1], s[..., 1:]  # (mu, S, K - 1)
    n_pieces = s0.shape[1] * s0.shape[2]
    sq = (delta**2).sum(-1)
    positive = sq > 0
    seg_length = torch.where(positive, torch.sqrt(torch.where(positive, sq, torch.ones_like(sq))), 0.0)
    length = (s1 - s0) * seg_length[..., None]
    with torch.no_grad():
        # The voxel of each piece's midpoint, axis by axis (no (mu, S, K, 3) temporaries).
        mid = 0.5 * (s0 + s1)
        keep = length > 0
        flat = torch.zeros_like(mid, dtype=torch.long)
        for axis in range(3):
            coord = start[..., axis, None] + delta[..., axis, None] * mid
            index = torch.floor((coord - origin[axis]) / size[axis])
            keep &= (index >= 0) & (index < shape[axis])
            flat = flat * shape[axis] + index.clamp(0, shape[axis] - 1).long()
        keep, flat = keep.reshape(mu, n_pieces), flat.reshape(mu, n_pieces)
    length = length.reshape(mu, n_pieces)  # in path order
    travelled = torch.cumsum(length * keep, -1)
    tail = travelled[:, -1:] - travelled  # length still to go after each piece
    muon, piece = keep.nonzero(as_tuple=True)
    voxel = flat[muon, piece]
    piece_length, piece_tail = length[muon, piece], tail[muon, piece]
    # Merge runs of pieces of one muon in one voxel (the two sides of a PoCA inside a voxel).
    with torch.no_grad():
        first = torch.ones_like(muon, dtype=torch.bool)
        first[1:] = (muon[1:] != muon[:-1]) | (voxel[1:] != voxel[:-1])
        last = torch.ones_like(first)
        last[:-1] = first[1:]
        run = torch.cumsum(first.long(), 0) - 1
    n_runs = int(first.sum())
    run_length = torch.zeros(n_runs, dtype=dtype, device=device).index_add(0, run, piece_length)
    return PathLengths(
        muon=muon[last],
        voxel=voxel[last],
        length=run_length,
        tail=piece_tail[last],
        n_muons=mu,
        n_voxels=math.prod(shape),
    )


def muon_path(incoming: Tracks, outgoing: Tracks, poca: Tensor, volume: PassiveVolume, path: Path = "poca") -> Tensor:
    """``(mu, P, 3)`` vertices of each muon's path through the volume (m).

    ``path="straight"``: entry on the top face -> exit on the bottom face (``P = 2``).
    ``path="poca"``: entry -> vertex -> exit (``P = 3``), the vertex at the PoCA's height clamped
    into the volume, midway between the two tracks at that height, inside the footprint. Inside
    the volume that is the PoCA to first order in the deflection; the PoCA of nearly parallel
    tracks can lie metres away, and clamping it coordinate by coordinate would send the path
    on a lateral detour.

    Args:
        incoming, outgoing: the tracks; their points at ``z_high`` and ``z_low`` are the entry and exit.
        poca: ``(mu, 3)`` points of closest approach (m).
        volume: the voxel grid.
        path: ``"poca"`` or ``"straight"``.
    """
    entry, exit_ = incoming.at(volume.z_high), outgoing.at(volume.z_low)
    if path == "straight":
        return torch.stack([entry, exit_], 1)
    if path != "poca":
        raise MutomoError(f"path must be 'poca' or 'straight'; got {path!r}")
    height = poca[:, 2].clamp(volume.z_low, volume.z_high)
    vertex = 0.5 * (incoming.at(height) + outgoing.at(height))
    (x_lo, x_hi), (y_lo, y_hi) = volume.x_range, volume.y_range
    low = torch.tensor([x_lo, y_lo, volume.z_low], dtype=vertex.dtype, device=vertex.device)
    high = torch.tensor([x_hi, y_hi, volume.z_high], dtype=vertex.dtype, device=vertex.device)
    return torch.stack([entry, torch.clamp(vertex, low, high), exit_], 1)


@dataclass(frozen=True)
class TransverseScatters:
    """Each muon's deflection and displacement in the frame of its incoming direction.

    Attributes:
        deflection: ``(mu, 2, 2)``: ``[k, 0]`` the deflection angle (rad) and ``[k, 1]`` the
            displacement at the exit plane (m) along the transverse directions ``k = u, v``
            (module docstring).
        noise: ``(mu, 4, 4)`` their measurement covariance, in the order
            ``(u angle, u displacement, v angle, v displacement)`` (rad^2, rad m, m^2).
    """

    deflection: Tensor
    noise: Tensor


def transverse_scatters(
    incoming: Tracks, outgoing: Tracks, z_exit: float, measurement_error: bool = True
) -> TransverseScatters:
    """Deflection angles and displacements in the incoming track's transverse frame.

    Args:
        incoming, outgoing: tracks of the same muons above and below the volume.
        z_exit: height of the exit plane (m), the volume's bottom face.
        measurement_error: propagate the tracks' covariances into ``noise`` (else zeros).

    Returns:
        :class:`TransverseScatters`.
    """
    t_in, t_out = incoming.slope, outgoing.slope
    tx, ty = t_in.unbind(-1)
    norm = torch.sqrt(1 + tx**2 + ty**2)
    gx = torch.sqrt(1 + tx**2)
    # G^-1 for G = [[gx, 0], [tx ty / gx, n / gx]] (module docstring).
    zero = torch.zeros_like(tx)
    g_inv = torch.stack([1 / gx, zero, -tx * ty / (gx * norm), gx / norm], -1).reshape(-1, 2, 2)
    h_in, h_out = z_exit - incoming.z_ref, z_exit - outgoing.z_ref
    delta = (outgoing.xy + t_out * h_out) - (incoming.xy + t_in * h_in)
    angle = (g_inv @ (t_in - t_out)[..., None])[..., 0] / norm[:, None]  # towards -z: see the module docstring
    displacement = (g_inv @ delta[..., None])[..., 0]
    deflection = torch.stack([angle, displacement], -1)  # (mu, k, a)
    if not measurement_error:
        return TransverseScatters(deflection, torch.zeros(*tx.shape, 4, 4, dtype=tx.dtype, device=tx.device))
    # Jacobian of (k, a) with respect to (c, m) = (position x/y, slope x/y) of each track:
    # J[k, a, c, m] = B[a, c] G^-1[k, m], with B_out = [[0, -1/n], [1, h_out]] and B_in = -[[0, -1/n], [1, h_in]].
    one = torch.ones_like(tx)

    def jacobian(sign: float, h: float) -> Tensor:
        b = sign * torch.stack([zero, -1 / norm, one, h * one], -1).reshape(-1, 2, 2)
        return torch.einsum("iac,ikm->ikacm", b, g_inv).reshape(-1, 4, 4)

    j_in, j_out = jacobian(-1.0, h_in), jacobian(1.0, h_out)
    noise = j_in @ incoming.covariance @ j_in.transpose(-1, -2) + j_out @ outgoing.covariance @ j_out.transpose(-1, -2)
    return TransverseScatters(deflection, noise)


@dataclass(frozen=True)
class EMProblem:
    """Everything the EM iterations need, precomputed once.

    Attributes:
        paths: the sparse path lengths (voxel indices offset by batch entry).
        scaled_w: ``(3, E)`` ``c_i (W_00, W_01, W_11)`` of each entry (rad^2 m^-1 units: times
            ``rho`` in m^-1 they are covariances); where the momentum lost is known, ``c`` of
            the momentum at the entry's depth (:func:`momentum_along_path`).
        deflection: ``(mu, 2, 2)`` data ``D_i`` (see :class:`TransverseScatters`).
        noise: ``(mu, 4, 4)`` measurement covariance ``E_i``.
        scale: ``(mu,)`` ``c_i = (E0 / (beta_i p_i))^2`` (dimensionless).
        weight: ``(mu,)`` muon likelihood weights.
        count: ``(V,)`` weighted number of muons crossing each voxel, ``M_j``.
        batch: ``(mu,)`` flat batch index of each muon, or ``None``.
        grid_shape: ``(*batch_shape, nx, ny, nz)``; ``V`` is its product.
        classes: momentum classes per muon (1: the momenta are given). With ``K > 1`` each
            "muon" row above is a (muon, momentum class) pair, the ``K`` rows of a muon
            consecutive, each carrying ``1 / K`` of the muon's weight (so that counts and path
            sums are the muon's) and ``c`` of its class's momentum (:class:`MaximumLikelihoodEM`,
            ``momentum_prior``).
        log_prior: ``(mu,)`` log prior probability of each row's class (``-inf``: excluded by
            the range cut), with ``classes > 1``; else ``None``.
        muons: ``(n,)`` the index in the data (:class:`ScatterData`'s flat muon axis) of each
            muon, before the expansion into classes (muons of zero weight and those whose path
            misses the grid are not in the problem); ``None`` if not built from data.
    """

    paths: PathLengths
    scaled_w: Tensor
    deflection: Tensor
    noise: Tensor
    scale: Tensor
    weight: Tensor
    count: Tensor
    batch: Tensor | None
    grid_shape: tuple[int, ...]
    classes: int = 1
    log_prior: Tensor | None = None
    muons: Tensor | None = None

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return self.grid_shape[:-3]


# 2 x 2 matrices as their four entries (m00, m01, m10, m11), each ``(mu,)``: the per-muon
# algebra below is elementwise, several times faster than batched (mu, 2, 2) matmuls on a CPU.
M2 = tuple[Tensor, Tensor, Tensor, Tensor]


def _mul(a: M2, b: M2) -> M2:
    return (
        a[0] * b[0] + a[1] * b[2],
        a[0] * b[1] + a[1] * b[3],
        a[2] * b[0] + a[3] * b[2],
        a[2] * b[1] + a[3] * b[3],
    )


def _sub(a: M2, b: M2) -> M2:
    return a[0] - b[0], a[1] - b[1], a[2] - b[2], a[3] - b[3]


def _transpose(a: M2) -> M2:
    return a[0], a[2], a[1], a[3]


def _inverse(a: M2) -> tuple[M2, Tensor]:
    det = a[0] * a[3] - a[1] * a[2]
    inv = 1 / det
    return (a[3] * inv, -a[1] * inv, -a[2] * inv, a[0] * inv), det


def _apply(a: M2, x: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    return a[0] * x[0] + a[1] * x[1], a[2] * x[0] + a[3] * x[1]


@dataclass(frozen=True)
class _Moments:
    """Per-muon quantities at the current density, each ``(mu, ...)``.

    Attributes:
        r: ``(3, mu)`` the entries ``(R_00, 2 R_01, R_11)`` of ``R = sum_k (q_k q_k^T - A_kk)``
            (``A = Sigma^-1``, ``q = A D``, ``k`` over the transverse directions), so that
            ``tr(R W) = r . (W_00, W_01, W_11)`` for a symmetric ``W``.
        quadratic: ``(mu,)`` ``D^T Sigma^-1 D``.
        log_det: ``(mu,)`` ``ln det Sigma``.
        inverse: the blocks ``(A_uu, A_uv, A_vv)`` of ``Sigma^-1``.
    """

    r: Tensor
    quadratic: Tensor
    log_det: Tensor
    inverse: tuple[M2, M2, M2]

    def blocks(self) -> Tensor:
        """``(mu, 2, 2, 2, 2)`` ``Sigma^-1`` indexed ``[k, a, l, b]``."""
        a_uu, a_uv, a_vv = self.inverse

        def mat(m: M2) -> Tensor:
            return torch.stack(m, -1).reshape(-1, 2, 2)

        # Stacking (mu, a, b) blocks along dim 2 gives (mu, a, l, b), then along dim 1 the k.
        rows = [[mat(a_uu), mat(a_uv)], [mat(_transpose(a_uv)), mat(a_vv)]]
        return torch.stack([torch.stack(row, 2) for row in rows], 1)


def _moments(inverse_x0: Tensor, problem: EMProblem) -> _Moments:
    """``Sigma_i = c_i sum_j rho_j (I_2 (x) W_ij) + E_i`` inverted by 2 x 2 blocks (Schur
    complement), with ``q_i = Sigma_i^-1 D_i``, the quadratic form and ``ln det Sigma_i``."""
    paths = problem.paths
    mu = problem.deflection.shape[0]
    # Everything per muon is a contiguous (mu,) row: gathers and scatters of strided or 2-D
    # tensors are several times slower on a CPU, in the forward and in the backward pass.
    rho = inverse_x0.index_select(0, paths.voxel)
    zero = torch.zeros(mu, dtype=rho.dtype, device=rho.device)
    s0, s1, s2 = (zero.index_add(0, paths.muon, w * rho) for w in problem.scaled_w)
    n = problem.noise.reshape(mu, 16).T.contiguous()  # n[4 r + c]: row r = 2 k + a, column c = 2 l + b
    d = problem.deflection.reshape(mu, 4).T.contiguous()
    p_blk: M2 = (s0 + n[0], s1 + n[1], s1 + n[4], s2 + n[5])
    q_blk: M2 = (n[2], n[3], n[6], n[7])
    r_blk: M2 = (s0 + n[10], s1 + n[11], s1 + n[14], s2 + n[15])
    p_inv, p_det = _inverse(p_blk)
    x = _mul(p_inv, q_blk)
    cross = _mul(_transpose(q_blk), x)
    a_vv, schur_det = _inverse(_sub(r_blk, cross))
    x_s = _mul(x, a_vv)
    a_uv: M2 = (-x_s[0], -x_s[1], -x_s[2], -x_s[3])  # -P^-1 Q S^-1
    a_uu = _sub(p_inv, _mul(a_uv, _transpose(x)))
    d_u, d_v = (d[0], d[1]), (d[2], d[3])
    au_du, auv_dv = _apply(a_uu, d_u), _apply(a_uv, d_v)
    avu_du, av_dv = _apply(_transpose(a_uv), d_u), _apply(a_vv, d_v)
    qu = (au_du[0] + auv_dv[0], au_du[1] + auv_dv[1])
    qv = (avu_du[0] + av_dv[0], avu_du[1] + av_dv[1])
    r = torch.stack(
        [
            qu[0] * qu[0] + qv[0] * qv[0] - a_uu[0] - a_vv[0],
            2 * (qu[0] * qu[1] + qv[0] * qv[1] - a_uu[1] - a_vv[1]),
            qu[1] * qu[1] + qv[1] * qv[1] - a_uu[3] - a_vv[3],
        ]
    )
    quadratic = qu[0] * d_u[0] + qu[1] * d_u[1] + qv[0] * d_v[0] + qv[1] * d_v[1]
    return _Moments(
        r=r,
        quadratic=quadratic,
        log_det=torch.log(p_det) + torch.log(schur_det),
        inverse=(a_uu, a_uv, a_vv),
    )


def _cast(value: Any, dtype: torch.dtype) -> Any:
    """A dataclass of tensors (nested) with its floating-point tensors cast to ``dtype``."""
    if isinstance(value, Tensor):
        return value.to(dtype) if value.is_floating_point() else value
    if is_dataclass(value) and not isinstance(value, type):
        return replace(value, **{f.name: _cast(getattr(value, f.name), dtype) for f in fields(value) if f.init})
    return value


def em_update(inverse_x0: Tensor, problem: EMProblem) -> Tensor:
    """One EM step on ``rho = 1 / X0`` (m^-1), ``(V,)`` flat over the batch and the grid
    (module docstring: ``rho_j <- rho_j + rho_j^2 sum_i w_i tr((Q_i - P_i) W'_ij) / (4 M_j)``).
    Voxels no muon crosses keep their value."""
    return _em_step(inverse_x0, problem, _moments(inverse_x0, problem))


def _mixture(problem: EMProblem, m: _Moments) -> tuple[Tensor, Tensor]:
    """``(weight, log_marginal)``, each ``(mu,)`` over the rows: the rows' EM weights and each
    row's muon's log-likelihood without the ``2 ln 2 pi`` (the same on the K rows of a muon).

    One class: the muon weights and the Gaussian log-likelihood. ``K`` classes: the posterior
    ``r_ik = pi_ik N(D_i; 0, Sigma_ik) / sum_k pi_ik N(D_i; 0, Sigma_ik)`` of each class at the
    current density (the E-step over the hidden momentum), times the muon's weight ``K w_i / K``,
    and ``ln sum_k pi_ik N(D_i; 0, Sigma_ik)``."""
    log_like = -0.5 * m.log_det - 0.5 * m.quadratic
    if problem.classes == 1 or problem.log_prior is None:
        return problem.weight, log_like
    k = problem.classes
    joint = (problem.log_prior + log_like).reshape(-1, k)
    log_marginal = torch.logsumexp(joint, -1, keepdim=True)
    posterior = torch.softmax(joint, -1)  # exactly 0 for the classes the range cut excludes
    return problem.weight * k * posterior.reshape(-1), log_marginal.expand(-1, k).reshape(-1)


def posterior_momentum(inverse_x0: Tensor, problem: EMProblem) -> Tensor:
    """``(n,)`` each muon's posterior effective momentum (GeV/c) at the density ``inverse_x0``
    (flat ``(V,)``, m^-1) of a problem with momentum classes, one per muon of the problem
    (:attr:`EMProblem.muons` says which of the data's).

    The posterior ``r_ik`` of the classes given the muon's deflection and displacement at that
    map (the E-step's, :func:`_mixture`) averages the Highland scale ``c_ik = (E0 / (beta_k
    p_k))^2``, the factor by which a momentum enters every scattering variance; the momentum
    returned is the one with that scale, ``beta p = E0 / sqrt(sum_k r_ik c_ik)``. With it, a
    method that needs one momentum per muon (PoCA X0, ASR, BCA) sees on average the variance
    the mixture model predicts for each muon."""
    if problem.log_prior is None:
        raise MutomoError("posterior_momentum needs a problem with momentum classes (a momentum prior)")
    m = _moments(inverse_x0, problem)
    k = problem.classes
    joint = (problem.log_prior + (-0.5 * m.log_det - 0.5 * m.quadratic)).reshape(-1, k)
    scale = (torch.softmax(joint, -1) * problem.scale.reshape(-1, k)).sum(-1)
    beta_p2 = HIGHLAND_E0**2 / scale  # (beta p)^2 = p^4 / (p^2 + m^2): solve for p^2
    p2 = 0.5 * (beta_p2 + torch.sqrt(beta_p2**2 + 4 * beta_p2 * MUON_MASS**2))
    return torch.sqrt(p2)


def _entry_terms(problem: EMProblem, m: _Moments) -> tuple[Tensor, Tensor]:
    """``(per_entry, w)``, each ``(E,)``: ``tr((Q_i - P_i) W'_ij)`` (twice the score of
    ``rho_j`` in row i's Gaussian log-likelihood) and the row's EM weight, per path entry."""
    paths = problem.paths
    r0, r1, r2 = (r.index_select(0, paths.muon) for r in m.r)
    per_entry = r0 * problem.scaled_w[0] + r1 * problem.scaled_w[1] + r2 * problem.scaled_w[2]
    return per_entry, _mixture(problem, m)[0].index_select(0, paths.muon)


def _em_step(inverse_x0: Tensor, problem: EMProblem, m: _Moments) -> Tensor:
    paths = problem.paths
    per_entry, w = _entry_terms(problem, m)
    total = torch.zeros_like(inverse_x0).index_add(0, paths.voxel, w * per_entry)
    crossed = problem.count > 0
    step = total / torch.where(crossed, 4 * problem.count, torch.ones_like(problem.count))
    updated = inverse_x0 + inverse_x0**2 * step
    return torch.maximum(updated, POSITIVITY_FLOOR * inverse_x0)


def log_likelihood(inverse_x0: Tensor, problem: EMProblem) -> Tensor:
    """Weighted log-likelihood of the data at ``rho = 1 / X0`` (flat ``(V,)``, m^-1):
    ``sum_i w_i [-1/2 ln det Sigma_i - 1/2 D_i^T Sigma_i^-1 D_i - 2 ln 2 pi]``, one value per
    batch entry, ``(*batch_shape,)`` (a scalar without batch axes)."""
    return _log_likelihood(problem, _moments(inverse_x0, problem))


def _log_likelihood(problem: EMProblem, m: _Moments) -> Tensor:
    # Each row carries its share of the muon's weight: the K rows of a muon sum to its term.
    per_muon = problem.weight * (_mixture(problem, m)[1] - 2 * LOG_2PI)
    if problem.batch is None:
        return per_muon.sum()
    n_batch = math.prod(problem.batch_shape)
    out = torch.zeros(n_batch, dtype=per_muon.dtype, device=per_muon.device).index_add(0, problem.batch, per_muon)
    return out.reshape(problem.batch_shape)


def _highland_scale(p: Tensor) -> Tensor:
    """``(E0 / (beta p))^2`` (dimensionless) of momenta ``p`` (GeV/c)."""
    beta_p = p**2 / torch.sqrt(p**2 + MUON_MASS**2)
    return (HIGHLAND_E0 / beta_p) ** 2


def momentum_along_path(paths: PathLengths, momentum: Tensor, loss: Tensor) -> Tensor:
    """``(E,)`` each entry's momentum (GeV/c): the muon's ``momentum`` (the mean of entering and
    leaving) corrected linearly along its path through the volume, from ``momentum + loss / 2``
    where it enters to ``momentum - loss / 2`` where it leaves, at the middle of the entry's
    voxel. Linear in path is exact for a constant stopping power (one material, a relativistic
    muon); elsewhere it spreads the loss by path rather than by density. Floored at 10 MeV/c.

    Why: a muon slows as it crosses, so it scatters more in the voxels it crosses last. With one
    momentum for the whole path, ML/EM put that excess in the bottom layers: on 30 cm of iron in
    three 10 cm layers, ln X0 came out -0.12 (bottom), +0.05, +0.20 (top) against +0.05 in
    every layer with the energy loss switched off (benchmarks/README.md, "Voxel X0 pulls")."""
    total = torch.zeros_like(momentum).index_add(0, paths.muon, paths.length).index_select(0, paths.muon)
    depth = (total - paths.tail - 0.5 * paths.length) / total.clamp(min=1e-9)  # 0 on entering, 1 leaving
    p = momentum.index_select(0, paths.muon) + loss.index_select(0, paths.muon) * (0.5 - depth)
    return p.clamp(min=0.01)


def with_momentum_classes(problem: EMProblem, log_prior: Tensor, momentum: Tensor) -> EMProblem:
    """The problem with each muon's momentum a hidden class: every muon becomes ``K`` rows
    (class-minor), row ``(i, k)`` with ``c`` of ``momentum[i, k]`` (GeV/c), prior
    ``log_prior[i, k]`` and ``1 / K`` of the muon's weight; path entries likewise (see
    :class:`EMProblem`). Classes excluded (``-inf``) for every muon are dropped first.
    ``log_prior`` and ``momentum`` are ``(mu, K)``, the muons of ``problem``
    (one class each)."""
    if problem.classes != 1:
        raise MutomoError("with_momentum_classes needs a problem with one momentum class per muon")
    mu, k = log_prior.shape
    if mu != problem.weight.shape[0] or tuple(momentum.shape) != (mu, k):
        raise MutomoError(
            f"log_prior and momentum must both have shape ({problem.weight.shape[0]}, K); "
            f"got {tuple(log_prior.shape)} and {tuple(momentum.shape)}"
        )
    # Classes no muon may be in (e.g. below every muon's range cut) carry nothing: drop them
    # (12 classes over 0.1-1000 GeV/c lose 2 to the range cut of 1 m of concrete, 3 to 1 m of iron).
    possible = torch.isfinite(log_prior).any(0)
    if bool(possible.any()) and not bool(possible.all()):
        log_prior, momentum = log_prior[:, possible], momentum[:, possible]
        k = log_prior.shape[1]
    dtype, device = problem.weight.dtype, problem.weight.device
    paths = problem.paths
    rows = (paths.muon[:, None] * k + torch.arange(k, device=device)).reshape(-1)
    expanded = PathLengths(
        muon=rows,
        voxel=paths.voxel.repeat_interleave(k),
        length=paths.length.repeat_interleave(k),
        tail=paths.tail.repeat_interleave(k),
        n_muons=mu * k,
        n_voxels=paths.n_voxels,
    )
    scale = _highland_scale(momentum.to(device=device, dtype=dtype)).reshape(-1)
    return replace(
        problem,
        paths=expanded,
        scaled_w=expanded.weight_matrices() * scale.index_select(0, rows),
        deflection=problem.deflection.repeat_interleave(k, 0),
        noise=problem.noise.repeat_interleave(k, 0),
        scale=scale,
        weight=(problem.weight / k).repeat_interleave(k),
        batch=None if problem.batch is None else problem.batch.repeat_interleave(k),
        classes=k,
        log_prior=log_prior.to(device=device, dtype=dtype).reshape(-1),
    )


def _row_information(m: _Moments) -> Tensor:
    """``(rows, 3, 3)`` ``F`` with ``tr(A W A W') = w^T F w'`` for symmetric ``W = sum_m w_m E_m``
    in the basis of their distinct entries ``(W_00, W_01, W_11)``, ``A = Sigma^-1`` of each row:
    ``F[i, m, n] = sum_{k, l} tr(A_kl E_m A_lk E_n)``."""
    blocks = m.blocks()
    dtype, device = blocks.dtype, blocks.device
    basis = torch.tensor([[[1, 0], [0, 0]], [[0, 1], [1, 0]], [[0, 0], [0, 1]]], dtype=dtype, device=device)
    return torch.einsum("ikalb,mbc,ilckd,nda->imn", blocks, basis, blocks, basis)


def fisher_diagonal(inverse_x0: Tensor, problem: EMProblem) -> Tensor:
    """``(V,)`` diagonal of the Fisher information of ``rho`` (m^2):
    ``I_jj = 1/2 sum_i w_i tr(Sigma_i^-1 W'_ij Sigma_i^-1 W'_ij)``.

    With momentum classes, the observed information of the mixture by Louis' identity (Louis,
    J. R. Stat. Soc. B 44 (1982) 226): the posterior mean of each class's information minus the
    posterior variance of its score ``s_ikj = 1/2 tr((Q_ik - P_ik) W'_ikj)``,
    ``I_jj = sum_i w_i [sum_k r_ik F_ikj - (sum_k r_ik s_ikj^2 - (sum_k r_ik s_ikj)^2)]``
    (the Gaussian expected information ``F`` standing for each class's observed one); the
    unknown momentum makes a voxel's density less certain than any known momentum would. It is
    floored at 1 % of the first term."""
    m = _moments(inverse_x0, problem)
    f = _row_information(m)
    paths = problem.paths
    w3 = problem.scaled_w.T
    per_entry = 0.5 * torch.einsum("em,emn,en->e", w3, f.index_select(0, paths.muon), w3)
    score, w = _entry_terms(problem, m)
    zeros = torch.zeros_like(inverse_x0)
    information = zeros.index_add(0, paths.voxel, w * per_entry)
    if problem.classes == 1:
        return information
    # Entries are class-minor (the K copies of an entry consecutive): the posterior moments of
    # the score over a muon's classes, per entry of its path.
    k = problem.classes
    s_k = (0.5 * score).reshape(-1, k)
    w_k = w.reshape(-1, k)
    total = w_k.sum(-1, keepdim=True)
    mean = (w_k * s_k).sum(-1, keepdim=True) / total.clamp(min=1e-300)
    spread = (w_k * (s_k - mean) ** 2).sum(-1)
    voxel = paths.voxel.reshape(-1, k)[:, 0]
    louis = information - zeros.index_add(0, voxel, spread)
    return torch.maximum(louis, 0.01 * information)


#: Rows (muons, or muon-class pairs) per chunk of :func:`fisher_matrix` (each holds ``L^2`` pairs).
_FISHER_CHUNK = 16384


def fisher_matrix(inverse_x0: Tensor, problem: EMProblem) -> Tensor:
    """``(n_batch, G, G)`` Fisher information of each batch entry's densities (m^2; ``G`` voxels
    a grid): ``I_jl = 1/2 sum_i w_i tr(Sigma_i^-1 W'_ij Sigma_i^-1 W'_il)`` over the muons that
    cross both voxels, and with momentum classes Louis' observed information as in
    :func:`fisher_diagonal` (whose values are its diagonal). Voxels share muons, so the error of
    one density with the others unknown, ``sqrt((I^-1)_jj)``, exceeds ``1 / sqrt(I_jj)``, the
    error with the others known (benchmarks/README.md, "Voxel X0 pulls": 1 m of water in 10 cm
    columns, pulls up to 1.8 with the latter). Built from every pair of entries of each row's
    path (rows in chunks); dense per batch entry."""
    m = _moments(inverse_x0, problem)
    dtype, device = inverse_x0.dtype, inverse_x0.device
    f = _row_information(m)
    paths = problem.paths
    score, w = _entry_terms(problem, m)
    grid = math.prod(problem.grid_shape[-3:])
    n_batch = math.prod(problem.batch_shape)
    rows = problem.weight.shape[0]
    k = problem.classes
    # Each row's entries, padded to the longest path: (rows, L).
    order = torch.argsort(paths.muon, stable=True)
    row = paths.muon[order]
    counts = torch.bincount(row, minlength=rows)
    width = int(counts.max()) if counts.numel() else 0
    out = torch.zeros(n_batch * grid * grid, dtype=dtype, device=device)
    if width == 0:
        return out.reshape(n_batch, grid, grid)
    start = torch.cumsum(counts, 0) - counts
    ends = torch.cumsum(counts, 0)
    chunk = max(k, _FISHER_CHUNK // k * k)  # whole muons: their K class rows together
    for lo in range(0, rows, chunk):
        hi = min(rows, lo + chunk)
        first, last = int(start[lo]), int(ends[hi - 1])
        sel = order[first:last]
        r = row[first:last] - lo
        position = torch.arange(first, last, device=device) - start[row[first:last]]
        n = hi - lo
        # This chunk's rows, their entries padded to the longest path: (n, L).
        vox = torch.full((n, width), -1, dtype=torch.long, device=device)
        vox[r, position] = paths.voxel[sel]
        g = torch.zeros(n, width, 3, dtype=dtype, device=device)
        g[r, position] = problem.scaled_w.T[sel]
        row_weight = torch.zeros(n, dtype=dtype, device=device)
        row_weight[r] = w[sel]
        pairs = 0.5 * row_weight[:, None, None] * torch.einsum("ram,rmn,rbn->rab", g, f[lo:hi], g)
        if k > 1:
            # Louis: minus the posterior covariance of the scores over each muon's classes.
            half_score = torch.zeros(n, width, dtype=dtype, device=device)
            half_score[r, position] = 0.5 * score[sel]
            sc = half_score.reshape(-1, k, width)
            wk = row_weight.reshape(-1, k)
            total = wk.sum(-1).clamp(min=1e-300)
            mean = (wk[..., None] * sc).sum(1) / total[:, None]
            dev = sc - mean[:, None, :]
            cov = torch.einsum("ik,ika,ikb->iab", wk, dev, dev)
            pairs = pairs.reshape(-1, k, width, width).sum(1) - cov
            vox = vox.reshape(-1, k, width)[:, 0]
        valid = (vox[:, :, None] >= 0) & (vox[:, None, :] >= 0)
        entry = vox.clamp(min=0)
        batch = entry // grid
        flat = (batch[:, :, None] * grid + entry[:, :, None] % grid) * grid + entry[:, None, :] % grid
        out = out.index_add(0, flat[valid], pairs[valid])
    return out.reshape(n_batch, grid, grid)


def marginal_variance(inverse_x0: Tensor, problem: EMProblem) -> Tensor:
    """``(V,)`` variance of each density with every other density unknown, ``(I^-1)_jj`` of each
    batch entry's :func:`fisher_matrix` over the voxels muons crossed (m^-2; ``inf`` where no
    muon crossed). Where the matrix is not positive definite on those voxels (Louis' correction
    can make it so away from the maximum, or for a voxel seen by a handful of muons),
    ``1 / I_jj`` from :func:`fisher_diagonal` (floored) for that batch entry instead."""
    info = fisher_matrix(inverse_x0, problem)
    crossed = (problem.count > 0).reshape(info.shape[:-1])
    # Uncrossed voxels decouple (their rows are zero): a unit diagonal keeps the matrix invertible.
    eye = torch.diag_embed((~crossed).to(info.dtype))
    factor, status = torch.linalg.cholesky_ex(info + eye)
    ok = status == 0
    safe = torch.where(ok[:, None, None], factor, torch.eye(info.shape[-1], dtype=info.dtype, device=info.device))
    variance = torch.cholesky_inverse(safe).diagonal(dim1=-2, dim2=-1)
    if not bool(ok.all()):  # only then is the conditional error needed
        diagonal = fisher_diagonal(inverse_x0, problem).reshape(crossed.shape)
        conditional = 1 / torch.where(crossed & (diagonal > 0), diagonal, torch.ones_like(diagonal))
        variance = torch.where(ok[:, None], variance, conditional)
    return torch.where(crossed, variance, torch.full_like(variance, math.inf)).reshape(-1)


@dataclass(frozen=True)
class MLEMResult:
    """The ML/EM reconstruction, with what it was computed from.

    Attributes:
        inverse_x0: ``(*batch, nx, ny, nz)`` the EM's ``rho = 1 / X0`` (m^-1), Rossi model (no
            log term; see :attr:`x0` for the corrected one).
        density: ``(*batch, nx, ny, nz)`` the scattering density ``lambda = (E0 / p0)^2 rho``
            of S07 (m^-1, nominal ``p0`` of the method).
        x0: ``(*batch, nx, ny, nz)`` radiation length (m): ``1 / rho`` with Highland's log term
            corrected if the method's ``log_term``; 0 where unmeasured.
        uncertainty: one standard deviation of ``x0`` (m) from the Fisher information
            (conditional on the other voxels, or marginal: the method's ``error``); 0 where
            unmeasured.
        measured: bool, voxels crossed by at least ``min_path`` (and more than 0) of weighted path.
        weight: muon weight that crossed each voxel.
        path: weighted path length through each voxel (m).
        log_likelihood: ``(iterations + 1, *batch)`` the log-likelihood before each iteration
            and after the last (detached).
        momentum: with a momentum prior, ``(mu,)`` each muon of the data's posterior effective
            momentum at the reconstructed map (GeV/c, detached; :func:`posterior_momentum`),
            the data's own momentum for the muons the EM did not use (zero weight, or a path
            that misses the grid); ``None`` with given momenta.
    """

    inverse_x0: Tensor
    density: Tensor
    x0: Tensor
    uncertainty: Tensor
    measured: Tensor
    weight: Tensor
    path: Tensor
    log_likelihood: Tensor
    momentum: Tensor | None = None


class MaximumLikelihoodEM:
    """ML/EM reconstruction of the scattering density (Schultz et al. 2007; module docstring).

    Args:
        iterations: EM iterations (>= 1), unrolled for the gradient.
        initial_x0: starting radiation length (m), > 0: one number, or a tensor broadcasting to
            ``(*batch, nx, ny, nz)`` (e.g. another method's map). ``None`` (default): the ML fit
            of one uniform density to the whole volume (per batch entry), by ``uniform_iterations``
            EM steps from water's X0 on the problem with all voxels merged (cheap: O(muons)).
            The EM converges slowly where many voxels share the muons (from water, 10 cm voxels of
            uniform concrete are still at 1.8 x their X0 after 20 iterations); the uniform start
            puts the background right at once.
        uniform_iterations: EM steps of the uniform fit (>= 1).
        path: ``"poca"`` (entry -> PoCA -> exit, default) or ``"straight"`` (entry -> exit).
        min_path: voxels crossed by less weighted path length than this (m) are unmeasured.
        measurement_error: add the track fits' covariance to each muon's model covariance.
        log_term: correct the reported X0 for Highland's log term (module docstring).
        nominal_momentum: ``p0`` (GeV/c) of the scattering density ``lambda`` reported in
            :attr:`MLEMResult.density` (S07: 3 GeV/c); it does not change X0.
        checkpoint: when a gradient is being recorded, recompute each iteration in the backward
            pass instead of storing its intermediate tensors: the memory of one iteration instead
            of all of them, for one more forward pass per iteration (which is ~1/6 of the
            backward's cost; benchmarks/README.md).
        momentum_prior: reconstruct without the momenta: ``None`` (default) uses the data's
            ``momentum_prior`` if it has one, else each muon's momentum in the data (the truth
            or an estimate). A
            :class:`~mutomo.reco.momentum.MomentumPrior`, e.g. an
            :class:`~mutomo.reco.ExpectedMomentum` (with ``n_bins`` 12-24; its deflection
            setting is not used: :meth:`~mutomo.reco.ExpectedMomentum.prior` is the flux spectrum
            at the muon's zenith above the range cut, on its momentum grid), makes each muon's
            momentum a hidden variable with that prior: the EM's E-step also
            takes the posterior of each muon's momentum class at the current density map, and
            the likelihood is the mixture over classes (class docstring). A muon that scatters
            much is then read as slow only as far as the rest of the map, seen by every other
            muon, does not explain it; one momentum per muon (``ExpectedMomentum`` with a nominal
            map) explained a dense object away (benchmarks/README.md, "Reconstruction without
            the truth"). Costs ``n_bins`` times the memory and time of an iteration.

    Example:
        >>> method = MaximumLikelihoodEM(iterations=10)
        >>> method.name
        'mlem'
    """

    name = "mlem"

    def __init__(
        self,
        iterations: int = 20,
        initial_x0: float | Tensor | None = None,
        uniform_iterations: int = 10,
        path: Path = "poca",
        min_path: float = 0.5,
        measurement_error: bool = True,
        log_term: bool = True,
        nominal_momentum: float = NOMINAL_MOMENTUM,
        checkpoint: bool = True,
        momentum_prior: MomentumPrior | None = None,
        acceleration: float = 16.0,
        error: Literal["conditional", "marginal"] = "conditional",
    ) -> None:
        if error not in ("conditional", "marginal"):
            raise MutomoError(f"error must be 'conditional' or 'marginal'; got {error!r}")
        if not (isinstance(acceleration, (int, float)) and math.isfinite(acceleration) and acceleration >= 1):
            raise MutomoError(f"acceleration (the largest over-relaxation exponent) must be >= 1; got {acceleration!r}")
        for name, value in (("iterations", iterations), ("uniform_iterations", uniform_iterations)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise MutomoError(f"{name} must be an integer >= 1; got {value!r}")
        bad = initial_x0 is not None and (
            not bool(torch.isfinite(initial_x0).all() and (initial_x0 > 0).all())
            if isinstance(initial_x0, Tensor)
            else not (math.isfinite(initial_x0) and initial_x0 > 0)
        )
        if bad:
            raise MutomoError(f"initial_x0 (the initial radiation length, m) must be finite and > 0; got {initial_x0}")
        if path not in ("poca", "straight"):
            raise MutomoError(f"path must be 'poca' or 'straight'; got {path!r}")
        if not min_path >= 0:
            raise MutomoError(f"min_path must be >= 0 m; got {min_path}")
        if not nominal_momentum > 0:
            raise MutomoError(f"nominal_momentum must be > 0 GeV/c; got {nominal_momentum}")
        self.iterations = iterations
        self.initial_x0 = initial_x0
        self.uniform_iterations = uniform_iterations
        self.path: Path = path
        self.min_path = min_path
        self.measurement_error = measurement_error
        self.log_term = log_term
        self.nominal_momentum = nominal_momentum
        self.checkpoint = checkpoint
        self.momentum_prior = momentum_prior
        self.acceleration = float(acceleration)
        self.error = error

    def __call__(self, data: ScatterData, volume: PassiveVolume) -> VoxelMap:
        """Reconstruct; the score is ``1 / X0`` (m^-1). Maps are ``(*batch, nx, ny, nz)``."""
        return self.voxel_map(self.reconstruct(data, volume))

    def problem(self, data: ScatterData, volume: PassiveVolume) -> EMProblem:
        """Path lengths, transverse data, scales and counts of the muons of nonzero weight."""
        keep = torch.nonzero(data.weight.detach() > 0).squeeze(1)
        incoming, outgoing = data.incoming.select(keep), data.outgoing.select(keep)
        poca = data.scatters.poca.index_select(0, keep)
        paths = path_lengths(muon_path(incoming, outgoing, poca, volume, self.path), volume)
        # Muons whose path misses the grid carry no information on it: drop them too.
        crossed = torch.zeros(keep.numel(), dtype=torch.bool, device=keep.device)
        crossed[paths.muon] = True
        if not bool(crossed.all()):
            renumber = torch.cumsum(crossed.long(), 0) - 1
            paths = replace(paths, muon=renumber[paths.muon], n_muons=int(crossed.sum()))
            rows = torch.nonzero(crossed).squeeze(1)
            keep = keep[rows]
            incoming, outgoing = incoming.select(rows), outgoing.select(rows)
        n_voxels = paths.n_voxels
        batch = None if data.batch is None else data.batch.index_select(0, keep)
        if batch is not None:
            paths = replace(
                paths,
                voxel=paths.voxel + batch.index_select(0, paths.muon) * n_voxels,
                n_voxels=n_voxels * data.batch_size,
            )
        p = data.momentum.index_select(0, keep)
        scale = _highland_scale(p)
        scale_entry = scale.index_select(0, paths.muon)
        if data.momentum_loss is not None:
            loss = data.momentum_loss.index_select(0, keep)
            scale_entry = _highland_scale(momentum_along_path(paths, p, loss))
        weight = data.weight.index_select(0, keep)
        # A muon whose tracks leave its angle uncertain by over a radian, or its displacement by
        # over a metre (e.g. a side whose panels all sit at one height: no lever arm), carries no
        # scattering information; its covariance (~1e10 and more) would overflow the float32
        # determinants of every EM step, and their gradients, into inf and NaN. It gets no weight,
        # and its tracks' covariances are set to 0 before they are propagated.
        with torch.no_grad():
            probe = transverse_scatters(incoming, outgoing, volume.z_low, self.measurement_error).noise
            useless = ~(probe.diagonal(dim1=-2, dim2=-1).amax(-1) <= MAX_MEASUREMENT_VARIANCE)
        if bool(useless.any()):
            incoming, outgoing = (
                replace(t, covariance=torch.where(useless[:, None, None], torch.zeros_like(t.covariance), t.covariance))
                for t in (incoming, outgoing)
            )
            weight = torch.where(useless, torch.zeros_like(weight), weight)
        obs = transverse_scatters(incoming, outgoing, volume.z_low, self.measurement_error)
        noise = obs.noise
        w_muon = weight.index_select(0, paths.muon)
        count = torch.zeros(paths.n_voxels, dtype=weight.dtype, device=weight.device).index_add(0, paths.voxel, w_muon)
        problem = EMProblem(
            paths=paths,
            scaled_w=paths.weight_matrices() * scale_entry,
            deflection=obs.deflection,
            noise=noise,
            scale=scale,
            weight=weight,
            count=count,
            batch=batch,
            grid_shape=(*data.batch_shape, *volume.shape),
            muons=keep,
        )
        prior = self.momentum_prior if self.momentum_prior is not None else data.momentum_prior
        if prior is None:
            return problem
        return with_momentum_classes(problem, *prior.prior(incoming, outgoing))

    def initial(self, problem: EMProblem) -> Tensor:
        """``(V,)`` the starting ``rho = 1 / X0`` (m^-1), flat over batch and grid: from
        ``initial_x0``, or the uniform ML fit (see the class docstring)."""
        dtype, device = problem.weight.dtype, problem.weight.device
        if self.initial_x0 is not None:
            x0 = torch.as_tensor(self.initial_x0, dtype=dtype, device=device)
            return (1 / x0).expand(problem.grid_shape).reshape(-1)
        # One voxel per batch entry: W is additive over a muon's path, so merge its entries.
        n_batch = math.prod(problem.batch_shape)
        n_mu = problem.weight.shape[0]
        muon = torch.arange(n_mu, device=device)
        zero = torch.zeros(n_mu, dtype=dtype, device=device)
        merged = torch.stack([zero.index_add(0, problem.paths.muon, w) for w in problem.scaled_w])
        batch = problem.batch if problem.batch is not None else torch.zeros_like(muon)
        count = torch.zeros(n_batch, dtype=dtype, device=device).index_add(0, batch, problem.weight)
        paths = PathLengths(muon=muon, voxel=batch, length=zero, tail=zero, n_muons=n_mu, n_voxels=n_batch)
        uniform = replace(problem, paths=paths, scaled_w=merged, count=count)
        rho = torch.full((n_batch,), 1 / get_material("water").x0, dtype=dtype, device=device)
        for _ in range(self.uniform_iterations):
            rho = em_update(rho, uniform)
        return rho.repeat_interleave(math.prod(problem.grid_shape[-3:]))

    def reconstruct(self, data: ScatterData, volume: PassiveVolume) -> MLEMResult:
        """Run the EM and convert to X0 (see :class:`MLEMResult`). In float32 the EM runs in
        float64 and its results are cast back: the 2 x 2 determinants of a muon's covariance
        range from ~1e-40 (a short path through air, micrometre tracking) to ~1e30, beyond
        float32, whose reciprocal and its derivative then overflow into inf and NaN."""
        problem = self.problem(data, volume)
        dtype = problem.weight.dtype
        work = _cast(problem, torch.float64) if dtype == torch.float32 else problem
        result = self._reconstruct(work)
        if work.log_prior is not None and work.muons is not None:
            with torch.no_grad():
                p = posterior_momentum(result.inverse_x0.detach().reshape(-1), work)
            momentum = data.momentum.detach().clone()
            momentum[work.muons] = p.to(momentum.dtype)
            result = replace(result, momentum=momentum)
        return _cast(result, dtype) if dtype == torch.float32 else result

    def posterior_momentum(self, data: ScatterData, volume: PassiveVolume) -> Tensor:
        """``(mu,)`` each muon's posterior effective momentum (GeV/c, detached) after
        reconstructing with its momentum marginalised (:attr:`MLEMResult.momentum`): for the
        methods that need one momentum per muon (``momentum = "posterior"`` in a configuration).
        Needs a momentum prior (``momentum_prior`` here or on the data)."""
        if self.momentum_prior is None and data.momentum_prior is None:
            raise MutomoError("posterior_momentum needs a momentum prior (momentum_prior here or on the data)")
        with torch.no_grad():
            momentum = self.reconstruct(data, volume).momentum
        assert momentum is not None
        return momentum

    def voxel_map(self, result: MLEMResult) -> VoxelMap:
        """The :class:`VoxelMap` of a reconstruction; its score is ``1 / X0`` (m^-1)."""
        r = result
        score = torch.where(r.measured, 1 / torch.where(r.measured, r.x0, torch.ones_like(r.x0)), 0.0)
        return VoxelMap(
            method=self.name, score=score, weight=r.weight, measured=r.measured, x0=r.x0, uncertainty=r.uncertainty
        )

    def _reconstruct(self, problem: EMProblem) -> MLEMResult:
        rho = self.initial(problem)
        n_batch = math.prod(problem.batch_shape)
        per_entry = math.prod(problem.grid_shape[-3:])
        omega = torch.ones(n_batch, dtype=rho.dtype, device=rho.device)

        def step(rho: Tensor, omega: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            m = _moments(rho, problem)
            value = _log_likelihood(problem, m)
            rho_em = _em_step(rho, problem, m)
            if self.acceleration == 1.0:
                return rho_em, value, omega
            # Over-relaxed step in ln rho, kept only where it does not lower the likelihood
            # (class docstring): every accepted point is at least as likely as the current one,
            # and the fallback, the EM point, is too.
            exponent = omega.repeat_interleave(per_entry)
            log_em = torch.log(rho_em / rho)
            trial = rho_em * torch.exp(((exponent - 1) * log_em).clamp(-MAX_LOG_STEP, MAX_LOG_STEP))
            gain = _log_likelihood(problem, _moments(trial, problem)) - value
            better = (gain >= 0).reshape(-1).detach()
            rho_next = torch.where(better.repeat_interleave(per_entry), trial, rho_em)
            omega = torch.where(better, (2 * omega).clamp(max=self.acceleration), torch.ones_like(omega))
            return rho_next, value, omega

        history = []
        for _ in range(self.iterations):
            if self.checkpoint and torch.is_grad_enabled():
                rho, value, omega = torch.utils.checkpoint.checkpoint(step, rho, omega, use_reentrant=False)
            else:
                rho, value, omega = step(rho, omega)
            history.append(value.detach())
        history.append(log_likelihood(rho, problem).detach())
        paths = problem.paths
        w = problem.weight.index_select(0, paths.muon)
        zeros = torch.zeros_like(rho)
        path_sum = zeros.index_add(0, paths.voxel, w * paths.length)
        measured = (path_sum >= self.min_path) & (path_sum > 0)
        inverse_x0 = rho
        if self.log_term:
            raw = torch.zeros_like(problem.weight).index_add(
                0, paths.muon, paths.length * rho.index_select(0, paths.voxel)
            )
            factor = raw / highland_inverse(raw)  # (1 + 0.038 ln t)^2 per muon
            mean_factor = zeros.index_add(0, paths.voxel, w * paths.length * factor.index_select(0, paths.muon))
            crossed = path_sum > 0
            mean_factor = torch.where(crossed, mean_factor / torch.where(crossed, path_sum, 1.0), 1.0)
            inverse_x0 = rho / mean_factor
        # Both finite and > 0 wherever a muon crossed (measured voxels were), taken only there.
        if self.error == "marginal":
            variance = marginal_variance(rho, problem)
            sigma_rho = torch.sqrt(torch.where(measured, variance, torch.ones_like(variance)))
        else:
            fisher = fisher_diagonal(rho, problem)
            sigma_rho = torch.rsqrt(torch.where(measured, fisher, torch.ones_like(fisher)))
        safe = torch.where(measured, inverse_x0, torch.ones_like(inverse_x0))
        x0 = torch.where(measured, 1 / safe, 0.0)
        uncertainty = torch.where(measured, sigma_rho / (safe * rho), 0.0)  # dX0 = X0 drho / rho
        grid = problem.grid_shape
        return MLEMResult(
            inverse_x0=rho.reshape(grid),
            density=(HIGHLAND_E0 / self.nominal_momentum) ** 2 * rho.reshape(grid),
            x0=x0.reshape(grid),
            uncertainty=uncertainty.reshape(grid),
            measured=measured.reshape(grid),
            weight=problem.count.reshape(grid),
            path=path_sum.reshape(grid),
            log_likelihood=torch.stack(history),
        )
