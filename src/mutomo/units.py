"""One unit system for the whole package.

Lengths are metres, energies and momenta GeV (GeV/c), angles radians, times seconds,
densities kg/m^3, radiation lengths metres. A name carries a unit suffix only when it is
*not* in this system (``energy_mev``, ``x0_g_cm2``).

Physical constants are CODATA 2018 / PDG 2024 values (PDG, "Physical constants" and
"Atomic and nuclear properties of materials").
"""

# Muon mass, PDG 2024: 105.6583755 MeV.
MUON_MASS = 0.1056583755
# Electron mass, PDG 2024: 0.51099895 MeV.
ELECTRON_MASS = 0.51099895e-3

# Conversions into the package system.
MM = 1e-3
CM = 1e-2
UM = 1e-6
MEV = 1e-3
KEV = 1e-6
EV = 1e-9
TEV = 1e3
MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0
G_PER_CM3 = 1000.0  # g/cm^3 -> kg/m^3
G_PER_CM2 = 10.0  # g/cm^2 -> kg/m^2
DEG = 3.141592653589793 / 180.0

# Highland formula constants (PDG Review, "Passage of particles through matter", eq. 34.15,
# Lynch & Dahl, NIM B58 (1991) 6): theta0 = 13.6 MeV / (beta c p) z sqrt(x/X0) (1 + 0.038 ln(x z^2/(X0 beta^2))).
HIGHLAND_E0 = 13.6e-3
HIGHLAND_LOG_COEFF = 0.038

# Molier's characteristic single-scattering angle chi_c^2 = 0.157 Z(Z+1)/A * t[g/cm^2] / (p beta [MeV])^2
# (Lynch & Dahl 1991 eq. 2; Bethe, Phys. Rev. 89 (1953) 1256). Expressed here in GeV^2 cm^2/g.
MOLIERE_CHI_C2 = 0.157e-6

# hbar c = 0.1973269804 GeV fm (PDG); nuclear radius R = 1.2 fm A^(1/3) (PDG Review, sec. 34.3).
HBARC_GEV_FM = 0.1973269804
NUCLEAR_R0_FM = 1.2
