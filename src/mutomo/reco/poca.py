"""Scatter quantities from incoming and outgoing tracks: deflection angles and the PoCA.

The point of closest approach (PoCA) of two lines ``P1 + s v1`` and ``P2 + t v2`` is the
midpoint of the two closest points, with (e.g. Schneider & Eberly, "Geometric Tools", 10.8)

    s = (b e - c d) / D,   t = (a e - b d) / D,   D = a c - b^2,
    a = v1.v1, b = v1.v2, c = v2.v2, d = v1.w, e = v2.w, w = P1 - P2.

Here ``v = (t_x, t_y, 1)`` and both lines are anchored at the same height ``z_mid`` (the
middle of the volume), so for (near-)parallel tracks, where ``D -> 0`` and the PoCA is
undefined, the regularised ``s = (b e - c d) D / (D^2 + eps^2)`` tends smoothly to the midpoint
of the two tracks at ``z_mid``: no NaN or inf in values or gradients.

``D = a c - b^2``, ``b e - c d`` and ``a e - b d`` are computed from ``n = v1 x v2`` (Lagrange's
identity: ``D = |n|^2``, ``b e - c d = -w.(v2 x n)``, ``a e - b d = -w.(v1 x n)``), whose
components are differences of slopes. Written as in the textbook, ``a`` and ``c`` are about 1
and ``D`` about the squared deflection, so in float32 (training's default) ``D`` lost most of its
digits for deflections of a few mrad: PoCA heights off by centimetres to decimetres, their
variances by ~15 %, and a training loss that jumped by ~1e-4 between designs 10 um apart
(``benchmarks/loss_smoothness.py``). Both forms agree in exact arithmetic. The PoCA covariance is
``J C J^T`` with the Jacobian ``J`` of the PoCA with respect to both tracks' parameters (forward-mode
autodiff, exact) and ``C`` the block-diagonal track covariance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mutomo.reco.track_fit import Tracks

# Regularisation of the PoCA denominator D ~ sin^2(deflection): deflections well above ~1 mrad
# are unaffected (3 mrad: 1 % pull towards the midpoint); below, the PoCA is ill-defined anyway
# and slides smoothly to the tracks' midpoint at z_mid.
PARALLEL_EPS = 1e-6


@dataclass(frozen=True)
class Scatters:
    """What the volume did to each muon, as seen by the tracks.

    Attributes:
        theta: ``(mu,)`` 3D deflection angle (rad).
        theta_xy: ``(mu, 2)`` deflection of the projected angles in x-z and y-z (rad).
        poca: ``(mu, 3)`` point of closest approach (m).
        poca_covariance: ``(mu, 3, 3)`` its covariance (m^2).
        weight: ``(mu,)`` product of the incoming and outgoing track weights.
    """

    theta: Tensor
    theta_xy: Tensor
    poca: Tensor
    poca_covariance: Tensor
    weight: Tensor


def _poca(params: Tensor, z_mid: float) -> Tensor:
    """PoCA from ``(mu, 8)`` = (x1, y1, tx1, ty1, x2, y2, tx2, ty2) at ``z_mid``."""
    # The constants enter as columns appended to the parameters, not as Python numbers: the same
    # values and derivatives (their tangents are 0), but under the jvp + vmap of compute_scatters an
    # operation between a tensor and a Python number (or a tensor from outside) goes through a
    # decomposition that imports torch._dynamo: ~800 modules and 60 MB in every process that
    # reconstructs.
    consts = torch.tensor([PARALLEL_EPS**2, 0.5, z_mid], dtype=params.dtype, device=params.device)
    full = torch.cat([params, consts.expand(*params.shape[:-1], 3)], dim=-1)
    x1, y1, tx1, ty1, x2, y2, tx2, ty2, eps2, half, z = full.unbind(-1)
    one = torch.ones_like(x1)
    v1 = torch.stack([tx1, ty1, one], -1)
    v2 = torch.stack([tx2, ty2, one], -1)
    w = torch.stack([x1 - x2, y1 - y2, torch.zeros_like(x1)], -1)
    # n = v1 x v2 from the slope differences, so that no term cancels (see the module docstring):
    # D = |n|^2, b e - c d = -w.(v2 x n), a e - b d = -w.(v1 x n).
    nx, ny = ty1 - ty2, tx2 - tx1
    n = torch.stack([nx, ny, -tx1 * nx - ty1 * ny], -1)
    den = (n * n).sum(-1)
    reg = den / (den**2 + eps2)
    s = -(w * torch.linalg.cross(v2, n, dim=-1)).sum(-1) * reg
    t = -(w * torch.linalg.cross(v1, n, dim=-1)).sum(-1) * reg
    p1 = torch.stack([x1, y1, z], -1) + s[..., None] * v1
    p2 = torch.stack([x2, y2, z], -1) + t[..., None] * v2
    return (p1 + p2) * half[..., None]


def compute_scatters(
    incoming: Tracks, outgoing: Tracks, z_mid: float, max_sigma: float = 1.0, covariance: bool = True
) -> Scatters:
    """Deflections and PoCA (with covariance) of matched incoming and outgoing tracks.

    Args:
        incoming, outgoing: tracks of the same muons above and below the volume.
        z_mid: height (m) at which both lines are anchored; the middle of the volume.
        max_sigma: cap (m) on the PoCA standard deviation along each axis (correlations are
            kept); nearly undeflected muons have an unbounded PoCA uncertainty otherwise.
        covariance: compute the PoCA covariance (8 forward-mode passes); ``False`` returns zeros.
    """
    a_in, a_out = incoming.at(z_mid), outgoing.at(z_mid)
    # Track parameters at z_mid: the position moves, the covariance follows the same shift.
    params = torch.cat([a_in[:, :2], incoming.slope, a_out[:, :2], outgoing.slope], dim=-1)
    poca = _poca(params, z_mid)
    if not covariance:
        poca_cov = torch.zeros(params.shape[0], 3, 3, dtype=params.dtype, device=params.device)
        return _finish(incoming, outgoing, poca, poca_cov)
    # Block-diagonal (8, 8) track covariance, by concatenation (slice assignment would make
    # autograd copy the whole tensor's gradient per assignment).
    c_in = _shift_covariance(incoming.covariance, z_mid - incoming.z_ref)
    c_out = _shift_covariance(outgoing.covariance, z_mid - outgoing.z_ref)
    zero = torch.zeros_like(c_in)
    cov = torch.cat([torch.cat([c_in, zero], -1), torch.cat([zero, c_out], -1)], -2)
    # (mu, 3, 8) Jacobian, forward mode: the 8 tangent directions are vmapped, so the PoCA
    # formula runs once on (8, mu) tensors rather than 8 times.
    basis = torch.eye(8, dtype=params.dtype, device=params.device)[:, None, :].expand(8, *params.shape)

    def column(tangent: Tensor) -> Tensor:
        return torch.func.jvp(lambda q: _poca(q, z_mid), (params,), (tangent,))[1]

    jac = torch.func.vmap(column)(basis).permute(1, 2, 0)
    poca_cov = cap_covariance(jac @ cov @ jac.transpose(-1, -2), max_sigma)
    return _finish(incoming, outgoing, poca, poca_cov)


def cap_covariance(cov: Tensor, max_sigma: float) -> Tensor:
    """Scale rows/columns so that no standard deviation exceeds ``max_sigma``; correlations stay."""
    var = cov.diagonal(dim1=-2, dim2=-1)
    scale = torch.rsqrt(torch.clamp(var / max_sigma**2, min=1.0))
    return cov * scale[..., :, None] * scale[..., None, :]


def _finish(incoming: Tracks, outgoing: Tracks, poca: Tensor, poca_cov: Tensor) -> Scatters:
    theta_xy = torch.atan(outgoing.slope) - torch.atan(incoming.slope)
    # Sign conventions: slopes are dx/dz; flipping both lines to point downwards leaves the
    # angle between them unchanged.
    v1 = torch.cat([incoming.slope, torch.ones_like(incoming.slope[:, :1])], -1)
    v2 = torch.cat([outgoing.slope, torch.ones_like(outgoing.slope[:, :1])], -1)
    cross2 = torch.linalg.cross(v1, v2, dim=-1).pow(2).sum(-1)
    theta = torch.atan2(torch.sqrt(cross2 + 1e-24), (v1 * v2).sum(-1))
    return Scatters(
        theta=theta, theta_xy=theta_xy, poca=poca, poca_covariance=poca_cov, weight=incoming.weight * outgoing.weight
    )


def _shift_covariance(cov: Tensor, dz: float) -> Tensor:
    """Covariance of (x + t_x dz, y + t_y dz, t_x, t_y) from that of (x, y, t_x, t_y)."""
    transport = torch.eye(4, dtype=cov.dtype, device=cov.device).clone()
    transport[0, 2] = dz
    transport[1, 3] = dz
    return transport @ cov @ transport.T
