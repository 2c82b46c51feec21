"""Shared test settings: quiet TensorFlow, two threads, small images."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pytest  # noqa: E402


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config, items):
    """Groups for ``pytest -n 2 --dist loadgroup`` (``make test``): one file's tests run in one worker,
    so a module's fixtures are built once; the files that share the session's exported run
    (tests/export_fixture.py, ~2 minutes to build) run in one worker, so it is built once too."""
    for item in items:
        shares_export = getattr(item.module, "exported_run", None) is not None
        item.add_marker(pytest.mark.xdist_group("exported_run" if shares_export else item.module.__name__))
