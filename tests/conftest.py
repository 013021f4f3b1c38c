"""Shared test set-up: CPU JAX, parsed absl flags (Grain workers read them), real-data fixture."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Video-scan metadata caches go to a throw-away folder (removed at exit), not the user's ~/.cache.
if "AEJAX_CACHE" not in os.environ:
  os.environ["AEJAX_CACHE"] = tempfile.mkdtemp(prefix="aejax_cache_")
  atexit.register(shutil.rmtree, os.environ["AEJAX_CACHE"], ignore_errors=True)

import pytest  # noqa: E402
from absl import flags  # noqa: E402

flags.FLAGS.mark_as_parsed()

ROOT = Path(__file__).resolve().parents[1]


def realdata_dir() -> Path | None:
  """`$AEJAX_REALDATA` or `../shared/realdata` beside the checkout, if present."""
  env = os.environ.get("AEJAX_REALDATA")
  for cand in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "realdata"]:
    if cand.is_dir():
      return cand
  return None


@pytest.fixture(scope="session")
def realdata() -> Path:
  """The real-data folder; skips the test when it is absent."""
  path = realdata_dir()
  if path is None:
    pytest.skip("real data not found (set AEJAX_REALDATA or place ../shared/realdata)")
  return path
