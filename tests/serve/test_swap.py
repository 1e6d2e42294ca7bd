"""Hot swap: a moved alias is picked up under load without a failed request; start-up errors."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.realruns import copy_run
from tests.serve.conftest import INSTANCE
from trainwise.train.parallel import free_port


@pytest.fixture(scope="module")
def registry(tab_run, tiny_runs, tmp_path_factory):
    """A sqlite registry with `tab` v1 (the trained run) and v2 (another real run: seed 1), champion -> v1."""
    from trainwise.registry import register_run
    from trainwise.registry.promote import promote

    root = tmp_path_factory.mktemp("swapreg")
    uri = f"sqlite:///{root}/mlflow.db"
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    mp.setenv("TRAINWISE_ACTOR", "tester")
    second = copy_run(tiny_runs.trained("good_seed1"), root / "tab2")  # a copy: registering writes into it
    register_run(tab_run, "tab")
    register_run(second, "tab")
    promote("tab", 1, alias="champion", force=True, reason="test set-up")
    yield uri
    mp.undo()


def test_alias_move_swaps_under_load_without_failures(registry, server, settings):
    from trainwise.registry.promote import promote
    from trainwise.serve.runtime import load_runtime

    runtime = load_runtime("tab@champion")
    assert runtime.version == "tab/1"
    seen, failures, stop = [], [], threading.Event()

    def client(url):
        with httpx.Client(timeout=30) as c:
            while not stop.is_set():
                r = c.post(f"{url}/v1/predict", json={"instances": [INSTANCE]})
                if r.status_code != 200:
                    failures.append(r.status_code)
                else:
                    seen.append(r.json()["model_version"])

    with server(runtime, settings(poll_alias_s=0.2), ref="tab@champion") as (url, app):
        threads = [threading.Thread(target=client, args=(url,)) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        promote("tab", 2, alias="champion", force=True, reason="hot swap test")
        deadline = time.monotonic() + 30
        while app.state.serve.runtime.version != "tab/2" and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join()
        metrics = httpx.get(f"{url}/metrics").text
    assert failures == []
    assert seen[0] == "tab/1" and seen[-1] == "tab/2"
    first_new = seen.index("tab/2")
    assert set(seen[first_new:]) == {"tab/2"}  # no flapping back once switched
    assert (
        'trainwise_model_info{precision="fp32",version="tab/2"} 1.0' in metrics
        and "trainwise_model_swaps_total 1.0" in metrics
    )


def test_unknown_model_reference_is_one_clear_error(registry, capsys):
    from trainwise.cli import main

    code = main(["serve", "tab@nosuchalias", "--port", str(free_port())])
    err = capsys.readouterr().err
    assert code == 2 and "no alias 'nosuchalias'" in err and "champion" in err and "Traceback" not in err
    code = main(["serve", "/no/such/run_dir", "--port", str(free_port())])
    err = capsys.readouterr().err
    assert code == 2 and "/no/such/run_dir" in err and len(err.strip().splitlines()) == 1


def test_port_in_use_is_one_clear_error(tab_run, capsys):
    import socket

    from trainwise.cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        code = main(["serve", str(tab_run), "--port", str(port)])
    err = capsys.readouterr().err
    assert code == 2 and f"--port {port}" in err and "in use" in err and len(err.strip().splitlines()) == 1


def test_missing_api_keys_file_is_one_clear_error(tab_run, tmp_path, capsys):
    from trainwise.cli import main

    code = main(
        ["serve", str(tab_run), "--port", str(free_port()), "--set", f"serve.api_keys_file={tmp_path / 'nokeys.txt'}"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "serve.api_keys_file" in err and "nokeys.txt" in err and len(err.strip().splitlines()) == 1
