"""Helpers shared by a unit test file and its integration counterpart (tests/unit/test_X.py and
tests/integration/test_X_runs.py): fixtures and functions both use, importable as ``helpers.X``
because tests/ is on sys.path (the rootdir conftest, tests/conftest.py)."""
