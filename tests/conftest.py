"""Shared fixtures: the Geant4 reference data in ../shared/data, when present.

``MUTOMO_SHARED_DATA`` points elsewhere, for a checkout that does not sit next to ``shared/``
(a git worktree, for instance).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
