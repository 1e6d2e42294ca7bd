"""`trainwise launch --emit slurm|kubeflow|ray`: the specs as written, and bad input.

The specs that can run here run in tests/train/test_multinode.py (the sbatch script with a
stand-in srun, the Ray script on a local Ray instance). The Kubeflow TrainJob cannot run without
a Kubernetes cluster, so it is checked field by field against the TrainJob schema recorded in
docs/kubeflow-trainjob.md (from the CRD of Kubeflow Trainer v2.3.0).
"""

from __future__ import annotations

import py_compile
import re
from pathlib import Path

import pytest
import yaml

from trainwise.cli import main
from trainwise.cluster.storage import filesystem_type, shared_storage_warning
from trainwise.config import config_to_toml, load_config

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "kubeflow-trainjob.md"
RECIPE = ["configs/lm-tiny.toml", "--set", "parallel.strategy=fsdp2", "--set", "train.micro_batch_size=4"]


def emit(tmp_path, target: str, *extra: str, nnodes: int = 2, nproc: int = 8, out_name: str = "job") -> Path:
    out = tmp_path / out_name
    args = ["launch", "--emit", target, "--nproc-per-node", str(nproc), "--nnodes", str(nnodes), *RECIPE]
    args += ["--set", f"train.global_batch_size={4 * nnodes * nproc}", *extra, "--out", str(out)]
    assert main(args) == 0
    return out


# --- Kubeflow: field by field against the documented schema --------------------------------------


def load_reference() -> tuple[str, dict[str, tuple[str, str]], re.Pattern]:
    text = REFERENCE.read_text()
    header = re.search(r"^apiVersion: (\S+), kind: (\w+)$", text, re.M)
    rows = dict((m[1], (m[2], m[3])) for m in re.finditer(r"^\| `([^`]+)` \| (\w+) \| (.*) \|$", text, re.M))
    assert header and len(rows) > 40, "the field table in docs/kubeflow-trainjob.md is missing or unreadable"
    quantity = re.search(r"^`(\^.*\$)`$", text, re.M)[1]
    return f"{header[1]} {header[2]}", rows, re.compile(quantity)


def fields(value, path: str, rows: dict):
    """(path, value) for the value and everything inside it, paths as in the reference table."""
    yield path, value
    if isinstance(value, dict):
        for key, child in value.items():
            yield from fields(child, f"{path}{{}}" if f"{path}{{}}" in rows else f"{path}.{key}", rows)
    elif isinstance(value, list):
        for child in value:
            yield from fields(child, f"{path}[]", rows)


TYPES = {"string": str, "integer": int, "object": dict, "array": list, "boolean": bool}


def check_field(path: str, value, kind: str, limits: str, quantity: re.Pattern) -> None:
    if kind == "quantity":
        assert isinstance(value, int) or quantity.match(str(value)), f"{path}: {value!r} is not a quantity"
    else:
        assert isinstance(value, TYPES[kind]) and not (kind == "integer" and isinstance(value, bool)), (path, value)
    for rule in filter(None, (part.strip() for part in limits.split(";"))):
        name, _, bound = rule.partition("=")
        if name == "required":
            missing = set(bound.split(",")) - set(value)
            assert not missing, f"{path}: required {missing} missing"
        elif name in ("minLength", "maxLength", "maxItems", "minimum"):
            size = value if name == "minimum" else len(value)
            assert size >= int(bound) if name.startswith("min") else size <= int(bound), f"{path}: {rule}, got {size}"


def check_trainjob(doc: dict) -> None:
    api, rows, quantity = load_reference()
    assert f"{doc['apiVersion'].split('/')[0]}/{doc['apiVersion'].split('/')[1]} {doc['kind']}" == api
    name = doc["metadata"]["name"]  # the rules on the whole TrainJob (ObjectMeta is not in the schema)
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63, name
    assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}
    seen = 0
    for path, value in fields(doc["spec"], "spec", rows):
        assert path in rows, f"{path} is not a TrainJob field (docs/kubeflow-trainjob.md)"
        check_field(path, value, *rows[path], quantity)
        seen += 1
    assert seen > 10


def test_kubeflow_trainjob_on_gpus_with_a_shared_volume(tmp_path):
    out = emit(tmp_path, "kubeflow", "--run-dir", "/mnt/runs/lm-16gpu", "--pvc", "team-runs", out_name="job.yaml")
    doc = yaml.safe_load(out.read_text())
    check_trainjob(doc)
    spec, trainer = doc["spec"], doc["spec"]["trainer"]
    assert spec["runtimeRef"] == {
        "apiGroup": "trainer.kubeflow.org",
        "kind": "ClusterTrainingRuntime",
        "name": "torch-distributed",
    }
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (2, 8)
    assert trainer["resourcesPerNode"]["limits"] == {"nvidia.com/gpu": 8} == trainer["resourcesPerNode"]["requests"]
    command = trainer["command"][2]
    assert "torchrun -m trainwise.cli train /tmp/trainwise-config.toml --run-dir /mnt/runs/lm-16gpu" in command
    env = {e["name"]: e["value"] for e in trainer["env"]}
    config_copy = tmp_path / "job.config.toml"
    assert env["TRAINWISE_CONFIG_TOML"] == config_copy.read_text()  # the spec carries the copied config
    pod = spec["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    pod = pod["template"]["spec"]["template"]["spec"]
    assert pod["volumes"][0]["persistentVolumeClaim"] == {"claimName": "team-runs"}
    assert pod["containers"][0]["volumeMounts"][0]["mountPath"] == "/mnt/runs"


def test_kubeflow_trainjob_on_cpus_warns_without_a_shared_volume(tmp_path, capsys):
    out = emit(tmp_path, "kubeflow", "--set", "train.device=cpu", "--run-dir", "/mnt/runs/x", nproc=2)
    assert "without --pvc" in capsys.readouterr().err
    doc = yaml.safe_load(out.read_text())
    check_trainjob(doc)
    assert doc["spec"]["trainer"]["resourcesPerNode"]["limits"] == {"cpu": 2}
    assert "runtimePatches" not in doc["spec"]


def test_the_schema_check_catches_a_wrong_field(tmp_path):
    """The field check is not vacuous: an unknown field, a wrong type, a missing required field."""
    out = emit(tmp_path, "kubeflow", "--run-dir", "/mnt/runs/x", "--pvc", "c")
    good = yaml.safe_load(out.read_text())
    for breaks in (
        lambda d: d["spec"]["trainer"].update(numWorkers=2),
        lambda d: d["spec"]["trainer"].update(numNodes="2"),
        lambda d: d["spec"]["runtimeRef"].pop("name"),
        lambda d: d["spec"]["trainer"]["resourcesPerNode"]["limits"].update({"nvidia.com/gpu": "eight"}),
    ):
        doc = yaml.safe_load(yaml.safe_dump(good))
        breaks(doc)
        with pytest.raises(AssertionError):
            check_trainjob(doc)


# --- Slurm and Ray: what they say ----------------------------------------------------------------


def test_slurm_script_and_the_config_beside_it(tmp_path, capsys):
    out = emit(
        tmp_path, "slurm", "--rdzv-endpoint", "ignored:29511", "--run-dir", "/shared/runs/lm", out_name="a.sbatch"
    )
    text = out.read_text()
    assert 'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)' in text
    assert re.search(r"^#SBATCH --nodes=2$", text, re.M) and re.search(r"^#SBATCH --gpus-per-node=8$", text, re.M)
    torchrun = " ".join(text.split("srun torchrun", 1)[1].replace("\\\n", " ").split())
    assert torchrun.startswith('--nnodes "$SLURM_NNODES" --nproc-per-node 8 --rdzv-backend c10d')
    assert '--rdzv-endpoint "$head_node:29511"' in torchrun
    config_copy = tmp_path / "a.config.toml"
    assert torchrun.endswith(f"-m trainwise.cli train {config_copy} --run-dir /shared/runs/lm")
    resolved = load_config("configs/lm-tiny.toml", [*RECIPE[2::2], "train.global_batch_size=64"])
    assert config_copy.read_text() == config_to_toml(resolved)  # every default written out
    assert out.stat().st_mode & 0o100


def test_ray_script_names_the_workers_and_trainwise_training(tmp_path):
    out = emit(tmp_path, "ray", "--run-dir", "/shared/runs/lm", nnodes=2, nproc=4, out_name="job_ray.py")
    py_compile.compile(str(out), doraise=True)
    text = out.read_text()
    assert "ScalingConfig(num_workers=8, use_gpu=True)" in text
    assert "TorchTrainer(\n        train_worker," in text and "TorchConfig(backend='nccl')" in text
    assert "from trainwise.cluster.ray_job import train_worker" in text


# --- bad input: one line, exit 2, nothing written ------------------------------------------------


@pytest.mark.parametrize(
    "args, expected",
    [
        (
            ["--emit", "pbs", "--nproc-per-node", "1"],
            "--emit 'pbs': unknown target; expected one of slurm, kubeflow, ray",
        ),
        (["--emit", "slurm", "--nproc-per-node", "1", "--nnodes", "0"], "expected N >= 1, M >= 1"),
        (["--emit", "slurm", "--nproc-per-node", "0"], "expected N >= 1, M >= 1"),
        (["--nproc-per-node", "1", "--nnodes", "0"], "expected N >= 1, M >= 1"),
        (["--emit", "slurm", "--nproc-per-node", "1", "--rdzv-endpoint", "node0"], "expected HOST:PORT"),
        (["--nproc-per-node", "1", "--rdzv-endpoint", "node0:http"], "expected HOST:PORT"),
        (["--nproc-per-node", "1", "--rdzv-endpoint", "node0:70000"], "expected HOST:PORT"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, expected):
    out = tmp_path / "job"
    run_dir = ["--run-dir", str(tmp_path / "run")]
    out_args = ["--out", str(out)] if "--emit" in args else []
    code = main(["launch", *args, *RECIPE, "--set", "parallel.strategy=ddp", *run_dir, *out_args])
    err = capsys.readouterr().err
    assert code == 2 and expected in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists() and not (tmp_path / "run").exists()


def test_emit_needs_out_and_run_dir_and_out_needs_emit(tmp_path, capsys):
    code = main(["launch", "--emit", "ray", "--nproc-per-node", "1", *RECIPE])
    err = capsys.readouterr().err
    assert code == 2 and "--emit ray needs --out, --run-dir" in err
    code = main(["launch", "--nproc-per-node", "1", *RECIPE, "--out", str(tmp_path / "job")])
    err = capsys.readouterr().err
    assert code == 2 and "--out writes a job spec: give --emit slurm|kubeflow|ray with it" in err


# --- shared storage -----------------------------------------------------------------------------

MOUNTS = """\
/dev/vda / ext4 rw 0 0
tmpfs /tmp tmpfs rw 0 0
srv:/export /mnt/nfs nfs4 rw 0 0
juicefs /mnt/jfs fuse.juicefs rw 0 0
/dev/vdb /mnt/nfs/local\\040disk xfs rw 0 0
"""


@pytest.mark.parametrize(
    "path, fs_type",
    [
        ("/home/u/runs/x", "ext4"),
        ("/tmp/x", "tmpfs"),
        ("/mnt/nfs/runs/x", "nfs4"),
        ("/mnt/jfs/x", "fuse.juicefs"),
        ("/mnt/nfs/local disk/x", "xfs"),
    ],
)
def test_filesystem_type_of_the_deepest_mount(path, fs_type):
    assert filesystem_type(Path(path), MOUNTS) == fs_type


def test_a_local_run_directory_warns_for_several_nodes_only():
    warning = shared_storage_warning(Path("/tmp/run"), 2, MOUNTS)
    assert "local filesystem (tmpfs)" in warning and "every node reads and writes" in warning
    assert shared_storage_warning(Path("/tmp/run"), 1, MOUNTS) is None
    assert shared_storage_warning(Path("/mnt/nfs/run"), 4, MOUNTS) is None
    assert shared_storage_warning(Path("/mnt/jfs/run"), 4, MOUNTS) is None
