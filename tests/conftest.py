"""Shared fixtures: the Geant4 reference data in ../shared/data, when present.

``MUTOMO_SHARED_DATA`` points elsewhere, for a checkout that does not sit next to ``shared/``
(a git worktree, for instance).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

try:  # property-based tests (tests/property); hypothesis comes with the dev extras
    from hypothesis import settings
except ImportError:  # pragma: no cover - the rest of the suite runs without it
    pass
else:
    # Reproducible runs: the same cases every time (derandomize) and nothing written to an
    # example database between runs; no per-example deadline (the machines are shared).
    settings.register_profile("mutomo", derandomize=True, database=None, deadline=None, print_blob=True)
    settings.load_profile(os.environ.get("MUTOMO_HYPOTHESIS_PROFILE", "mutomo"))

SHARED_DATA = Path(os.environ.get("MUTOMO_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
G4_FILE = SHARED_DATA / "geant4_scatter_1cm.h5"


@pytest.fixture(scope="session")
def geant4_file() -> Path:
    if not G4_FILE.exists():
        pytest.skip(
            f"Geant4 reference samples not found at {G4_FILE} (they live in ../shared/data; "
            "set MUTOMO_SHARED_DATA to read them from elsewhere)"
        )
    return G4_FILE
