"""One small tabular model for the whole serve test directory, and a real server on a free port."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time

import pytest

from tests.realruns import copy_run
from trainwise.train.parallel import free_port

INSTANCE = {
    "rate_marriage": 3.0,
    "age": 32.0,
    "yrs_married": 9.0,
    "children": 2.0,
    "religious": 2.0,
    "education": "college graduate",
    "occupation": "white collar",
    "occupation_husb": "managerial/business",
}


@pytest.fixture(scope="session")
def tab_run(tiny_runs, tmp_path_factory):
    """This directory's copy of the shared real tabular run (tests/realruns.py): registering it writes into it."""
    return copy_run(tiny_runs.trained("good"), tmp_path_factory.mktemp("serve") / "tab")


def serve_settings(**changes):
    from trainwise.config import ServeConfig

    return dataclasses.replace(ServeConfig(), **changes)


@contextlib.contextmanager
def running_server(runtime, settings, ref=None):
    """uvicorn serving build_app(runtime, settings) in a thread; yields the base URL."""
    import uvicorn

    from trainwise.serve.app import build_app

    port = free_port()
    app = build_app(runtime, settings, ref=ref)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(timeout=20)


@pytest.fixture
def server():
    """`with server(runtime, settings) as (url, app):` a real uvicorn server on a free port."""
    return running_server


@pytest.fixture
def settings():
    return serve_settings


@pytest.fixture(scope="session")
def runtime(tab_run):
    from trainwise.serve.runtime import load_runtime

    return load_runtime(str(tab_run))
