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

**Uncertainty.** The Fisher information
``I_jj = 1/2 sum_i w_i tr(Sigma_i^-1 W'_ij Sigma_i^-1 W'_ij)`` (Gaussian model, covariance
linear in ``rho``) gives ``1 / sqrt(I_jj)``, the Cramer-Rao error of ``rho_j`` when the other
voxels are known and the model is right. Voxels share muons, so the marginal error is larger
(exact for a single voxel); and the model's Gaussian core is not Molière's distribution, whose
tails put more variance in the per-muon scores ``s_ij`` than ``I`` says. The default error is
therefore the sandwich ``J_jj / I_jj^2``, ``J_jj = sum_i (w_i s_ij)^2`` (Huber 1967, White
1982), never below ``1 / I_jj`` (:func:`sandwich_variance`; the other choices:
:class:`MaximumLikelihoodEM`'s ``error``).

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
``M_j``, as ``sum_k r_ik = 1``). Implemented by giving every muon ``K`` class rows
(:func:`with_momentum_classes`) that share its path: a class only rescales the scattering part
of the covariance by ``c_k``, so the sums over the path are done once per muon (``sum_j rho_j
W_ij``, and ``sum_k w_ik c_k R_ik`` before the M-step reads the path entries): ``K`` times
less memory and work per path entry than a path per class. A muon deflected much is read as
slow only as far as the density map, which every other muon constrains, fails to explain it,
which is what the single momentum of :class:`~mutomo.reco.ExpectedMomentum` with a nominal map
could not do (it explained a dense cube away). The error comes from Louis' observed information
(:func:`fisher_diagonal`).

**Outliers.** Highland's Gaussian has no tail for a hard single scatter or a bad track; with
``outlier_fraction`` (:func:`with_outliers`) each muon's likelihood is the mixture
``(1 - epsilon) sum_k pi_ik N(D_i; 0, Sigma_ik) + epsilon q_i`` with a broad ``q_i`` that does not
depend on the density. Its posterior ``r_i,out`` is one more component of the E-step: the
classes' weights sum to ``1 - r_i,out``, and the M-step's count becomes ``sum_i w_i (1 - r_i,out)``
over the muons crossing the voxel.

The package, in the order a batch goes through it: :mod:`.paths` (each muon's sparse path
lengths through the voxels), :mod:`.model` (its transverse data, the EM problem, the moments of
the likelihood, the EM step), :mod:`.information` (Fisher information and marginal variances),
:mod:`.method` (:class:`MaximumLikelihoodEM`, the voxel method that runs them), :mod:`.evidence`
(each voxel's log-likelihood ratio of a target material against innocent ones, after the fit).
"""

from mutomo.reco.mlem.evidence import (
    Hypothesis,
    hypothesis_level,
    material_evidence,
    voxel_evidence,
    voxel_log_likelihoods,
)
from mutomo.reco.mlem.information import fisher_diagonal, fisher_matrix, marginal_variance, sandwich_variance
from mutomo.reco.mlem.method import (
    MAX_LOG_STEP,
    MAX_MEASUREMENT_VARIANCE,
    NOMINAL_MOMENTUM,
    MaximumLikelihoodEM,
    MLEMResult,
)
from mutomo.reco.mlem.model import (
    POSITIVITY_FLOOR,
    EMProblem,
    TransverseScatters,
    em_update,
    log_likelihood,
    momentum_along_path,
    outlier_posterior,
    posterior_momentum,
    transverse_scatters,
    with_momentum_classes,
    with_outliers,
)
from mutomo.reco.mlem.paths import PARALLEL, PathLengths, PathModel, muon_path, path_lengths

__all__ = [
    "material_evidence",
    "voxel_evidence",
    "voxel_log_likelihoods",
    "Hypothesis",
    "hypothesis_level",
    "MAX_LOG_STEP",
    "MAX_MEASUREMENT_VARIANCE",
    "NOMINAL_MOMENTUM",
    "PARALLEL",
    "POSITIVITY_FLOOR",
    "EMProblem",
    "MLEMResult",
    "MaximumLikelihoodEM",
    "PathModel",
    "PathLengths",
    "TransverseScatters",
    "em_update",
    "fisher_diagonal",
    "fisher_matrix",
    "log_likelihood",
    "marginal_variance",
    "momentum_along_path",
    "muon_path",
    "outlier_posterior",
    "path_lengths",
    "posterior_momentum",
    "sandwich_variance",
    "transverse_scatters",
    "with_momentum_classes",
    "with_outliers",
]
