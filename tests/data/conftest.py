"""Makes `official` importable when pytest is run as `pytest tests/data`.

The repository root is not installed as a package and the bare `pytest` entry
point does not put the working directory on sys.path (`python -m pytest` does).
"""
import pathlib
import sys

_ROOT = str(pathlib.Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)
