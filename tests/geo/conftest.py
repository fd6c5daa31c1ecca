import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# tests/geo/conftest.py -> repo root is parents[2]; the shared data folder sits beside the repo.
SHARED_SAMPLES = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "osv5m-samples").resolve()


@pytest.fixture(scope="session")
def geocoder():
    """reverse_geocode with its data loaded once per test session (~1-2 s)."""
    from geospot.geo import geocode

    geocode._load()
    return geocode.reverse_geocode


@pytest.fixture(scope="session")
def osv5m_labels() -> Path:
    path = SHARED_SAMPLES / "labels.csv"
    if not path.exists():
        pytest.skip(f"shared OSV-5M samples not found at {path} (they live beside the repo in ../shared/data)")
    return path
