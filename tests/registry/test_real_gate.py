"""The promotion gate through the real evaluate component (skipped until it is merged)."""

from __future__ import annotations

import pytest

from tests.registry.rundirs import make_run

pytest.importorskip("trainwise.evaluate.compare", reason="the evaluate component (issue 7) is not in this tree yet")


def test_real_gate_refuses_a_worse_model(store, tmp_path, workload, cli):
    good, _ = make_run(tmp_path, "good", workload, 40)
    worse, _ = make_run(tmp_path, "worse", workload, 40, flip_labels=True)
    for run_dir in (good, good, worse):  # v1, v2 (same model: must pass), v3 (accuracy 0.72 -> 0.29)
        assert cli("register", run_dir, "--name", "real")[0] == 0
    assert cli("promote", "real", "1")[0] == 0
    code, out, err = cli("promote", "real", "2")
    assert code == 0, err
    code, out, err = cli("promote", "real", "3")
    assert code == 1 and "refused" in err, err
    code, out, err = cli("history", "real", "--json")
    assert '"refused"' in out and '"passed"' in out
