"""`--emit kubeflow`: a Kubeflow Trainer v2 `TrainJob` (trainer.kubeflow.org/v1alpha1).

The job runs on the `torch-distributed` ClusterTrainingRuntime, which injects torchrun's settings
as PET_* variables (PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK, PET_MASTER_ADDR,
PET_MASTER_PORT) into the `node` container, so the command is a plain `torchrun -m trainwise.cli
train`. The resolved config travels inside the spec (env TRAINWISE_CONFIG_TOML, written to a file
before torchrun starts), so the job needs no ConfigMap; the run directory lives on a
PersistentVolumeClaim (--pvc) mounted at its parent on every node. The fields used, their types and
limits are in docs/kubeflow-trainjob.md (from the TrainJob CRD of Kubeflow Trainer v2.3.0).
The v1 `PyTorchJob` (kubeflow.org/v1, training-operator) is legacy and not emitted.
"""

from __future__ import annotations

import shlex
from pathlib import PurePosixPath

from trainwise.errors import TrainwiseError

GROUP = "trainer.kubeflow.org"
CONFIG_IN_POD = "/tmp/trainwise-config.toml"
NODE_CONTAINER = "node"  # the trainer container's name in the torch-distributed runtime
RUN_VOLUME = "trainwise-runs"


def trainer_command(job) -> list[str]:
    restarts = f"--max-restarts {job.max_restarts} " if job.max_restarts else ""
    script = (
        f'printf "%s" "$TRAINWISE_CONFIG_TOML" > {CONFIG_IN_POD}\n'
        f"exec torchrun {restarts}-m trainwise.cli train {CONFIG_IN_POD} --run-dir {shlex.quote(job.run_dir)}\n"
    )
    return ["sh", "-c", script]


def resources_per_node(job) -> dict:
    """GPUs as extended resources: requests must equal limits for nvidia.com/gpu (Kubernetes rule)."""
    if job.gpus:
        gpus = {"nvidia.com/gpu": job.nproc_per_node}
        return {"requests": dict(gpus), "limits": dict(gpus)}
    return {"requests": {"cpu": job.nproc_per_node}, "limits": {"cpu": job.nproc_per_node}}


def run_volume_patch(job) -> list[dict]:
    """Mount the claim at the run directory's parent in the trainer's pods (runtimePatches, Trainer >= v2.2)."""
    if not job.pvc:
        return []
    mount_path = str(PurePosixPath(job.run_dir).parent)
    pod_spec = {
        "volumes": [{"name": RUN_VOLUME, "persistentVolumeClaim": {"claimName": job.pvc}}],
        "containers": [{"name": NODE_CONTAINER, "volumeMounts": [{"name": RUN_VOLUME, "mountPath": mount_path}]}],
    }
    replicated_job = {"name": NODE_CONTAINER, "template": {"spec": {"template": {"spec": pod_spec}}}}
    return [
        {
            "manager": "trainwise",
            "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [replicated_job]}}},
        }
    ]


def build_trainjob(job) -> dict:
    env = [
        {"name": "TRAINWISE_CONFIG_TOML", "value": job.config_toml},
        {"name": "TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "value": "1"},  # see docs/distributed.md, Fault tolerance
    ]
    spec = {
        "runtimeRef": {"apiGroup": GROUP, "kind": "ClusterTrainingRuntime", "name": "torch-distributed"},
        "trainer": {
            "image": job.image,
            "command": trainer_command(job),
            "env": env,
            "numNodes": job.nnodes,
            "numProcPerNode": job.nproc_per_node,
            "resourcesPerNode": resources_per_node(job),
        },
    }
    patches = run_volume_patch(job)
    if patches:
        spec["runtimePatches"] = patches
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": job.name, "labels": {"app.kubernetes.io/managed-by": "trainwise"}},
        "spec": spec,
    }


def render_trainjob(job) -> str:
    try:
        # lazy: PyYAML is optional and only needed to render this manifest
        import yaml
    except ImportError:
        raise TrainwiseError(
            "--emit kubeflow writes YAML with PyYAML, which is not installed: pip install pyyaml"
        ) from None

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper, value: str):  # multi-line strings (the config, the command) as readable blocks
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    header = (
        f"# Written by `trainwise launch --emit kubeflow`: {job.world_size} processes "
        f"({job.nnodes} nodes x {job.nproc_per_node} per node).\n"
        f"# Apply with: kubectl apply -f {job.spec_path.name}   (needs Kubeflow Trainer >= v2.2 and the\n"
        "# torch-distributed ClusterTrainingRuntime; the image must have trainwise installed)\n"
    )
    return header + yaml.dump(build_trainjob(job), Dumper=Dumper, sort_keys=False, width=1000)
