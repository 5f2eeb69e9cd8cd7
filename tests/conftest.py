"""Shared test fixtures: the interoperability files and seeded torch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
INTEROP_DIR = REPO_ROOT.parent / "shared" / "fixtures" / "interop"


@pytest.fixture(scope="session")
def interop_dir() -> Path:
    """``../shared/fixtures/interop`` beside the checkout (files written by RELION, cryoSPARC, cryoDRGN)."""
    if not INTEROP_DIR.is_dir():
        pytest.fail(f"interop fixtures not found at {INTEROP_DIR}: clone the project beside ../shared")
    return INTEROP_DIR


@pytest.fixture(autouse=True)
def _seed_torch():
    torch.manual_seed(0)
    yield
