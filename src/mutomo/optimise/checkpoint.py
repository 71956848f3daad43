"""Checkpoints of an optimisation: the last few kept, each checked before it is trusted.

After every epoch :func:`save_checkpoint` writes ``checkpoints/epoch_NNNNN.pt`` (the design,
the optimisers' states, the history and the best validated design so far) atomically, with its
SHA-256 beside it in ``epoch_NNNNN.pt.sha256``, and deletes all but the newest
:data:`KEPT`. :func:`load_latest` tries them newest first: a checkpoint whose checksum does
not match, that torch cannot read, or that lacks a field is named on stderr, renamed to
``*.corrupt`` (kept for inspection, never read again) and the next older one is tried, so a
truncated or corrupted file costs at most the epochs since the one before it (one epoch when
only the newest is damaged). With no readable checkpoint the run starts again from epoch 0.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
from pathlib import Path
from typing import Any

import torch

from mutomo.errors import CheckpointError
from mutomo.io.files import write_atomic

KEPT = 3
"""How many of the newest checkpoints are kept."""
FIELDS = ("epoch", "design", "optimisers", "history")
LEGACY = "last.pt"  # the single checkpoint of runs written before checkpoints were kept by epoch


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (with at least :data:`FIELDS`) as the checkpoint of ``state["epoch"]``
    and drop the ones older than the newest :data:`KEPT`. A write killed half-way leaves the
    earlier checkpoints as they were."""
    folder = checkpoint_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    path = folder / f"epoch_{state['epoch']:05d}.pt"
    write_atomic(path.with_name(path.name + ".sha256"), (_digest(data) + "\n").encode())
    write_atomic(path, data)
    for old in checkpoints(run_dir)[KEPT:]:
        old.unlink(missing_ok=True)
        old.with_name(old.name + ".sha256").unlink(missing_ok=True)
    (folder / LEGACY).unlink(missing_ok=True)
    return path


def checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoints, newest first (a legacy ``last.pt`` last)."""
    folder = checkpoint_dir(run_dir)
    found = sorted(folder.glob("epoch_*.pt"), reverse=True)
    legacy = folder / LEGACY
    return found + ([legacy] if legacy.exists() else [])


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Read and check one checkpoint; raises :class:`CheckpointError` saying what is wrong."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    checksum = path.with_name(path.name + ".sha256")
    if checksum.exists():
        expected = checksum.read_text().strip()
        if _digest(data) != expected:
            raise CheckpointError(
                f"{path}: checksum mismatch (truncated or corrupted; expected sha256 {expected[:12]}…)"
            )
    elif path.name != LEGACY:
        raise CheckpointError(f"{path}: its checksum file {checksum.name} is missing")
    try:
        state = torch.load(io.BytesIO(data), weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file; all mean "unreadable"
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or any(k not in state for k in FIELDS):
        missing = [k for k in FIELDS if not isinstance(state, dict) or k not in state]
        raise CheckpointError(f"{path}: lacks {missing}")
    return state


def load_latest(run_dir: Path) -> dict[str, Any] | None:
    """The newest readable checkpoint of ``run_dir`` (``None`` if there is none). Damaged ones
    are reported on stderr and renamed ``*.corrupt``."""
    for path in checkpoints(run_dir):
        try:
            return read_checkpoint(path)
        except CheckpointError as exc:
            quarantined = path.with_name(path.name + ".corrupt")
            os.replace(path, quarantined)
            print(f"warning: {exc}; moved to {quarantined.name}, trying an older checkpoint", file=sys.stderr)
    return None
