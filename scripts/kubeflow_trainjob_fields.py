"""Print the TrainJob fields trainwise emits, with their types and limits, from the CRD's schema.

The table in docs/kubeflow-trainjob.md is this script's output for the CRD of Kubeflow Trainer
v2.3.0; tests/test_emit.py checks `trainwise launch --emit kubeflow` against that table. To
refresh it for a newer Trainer release:

    git clone https://github.com/kubeflow/trainer && git -C trainer checkout vX.Y.Z
    python scripts/kubeflow_trainjob_fields.py trainer/manifests/base/crds/trainer.kubeflow.org_trainjobs.yaml
"""

from __future__ import annotations

import sys

import yaml

POD = "spec.runtimePatches[].trainingRuntimeSpec.template.spec.replicatedJobs[].template.spec.template.spec"
# The fields emitted (see trainwise/cluster/kubeflow.py); parents are listed before children.
FIELDS = [
    "metadata",
    "spec",
    "spec.runtimeRef",
    "spec.runtimeRef.apiGroup",
    "spec.runtimeRef.kind",
    "spec.runtimeRef.name",
    "spec.trainer",
    "spec.trainer.image",
    "spec.trainer.command",
    "spec.trainer.command[]",
    "spec.trainer.env",
    "spec.trainer.env[]",
    "spec.trainer.env[].name",
    "spec.trainer.env[].value",
    "spec.trainer.numNodes",
    "spec.trainer.numProcPerNode",
    "spec.trainer.resourcesPerNode",
    "spec.trainer.resourcesPerNode.requests",
    "spec.trainer.resourcesPerNode.requests{}",
    "spec.trainer.resourcesPerNode.limits",
    "spec.trainer.resourcesPerNode.limits{}",
    "spec.runtimePatches",
    "spec.runtimePatches[]",
    "spec.runtimePatches[].manager",
    "spec.runtimePatches[].trainingRuntimeSpec",
    "spec.runtimePatches[].trainingRuntimeSpec.template",
    "spec.runtimePatches[].trainingRuntimeSpec.template.spec",
    "spec.runtimePatches[].trainingRuntimeSpec.template.spec.replicatedJobs",
    "spec.runtimePatches[].trainingRuntimeSpec.template.spec.replicatedJobs[]",
    "spec.runtimePatches[].trainingRuntimeSpec.template.spec.replicatedJobs[].name",
    "spec.runtimePatches[].trainingRuntimeSpec.template.spec.replicatedJobs[].template",
    "spec.runtimePatches[].trainingRuntimeSpec.template.spec.replicatedJobs[].template.spec",
    "spec.runtimePatches[].trainingRuntimeSpec.template.spec.replicatedJobs[].template.spec.template",
    POD,
    f"{POD}.volumes",
    f"{POD}.volumes[]",
    f"{POD}.volumes[].name",
    f"{POD}.volumes[].persistentVolumeClaim",
    f"{POD}.volumes[].persistentVolumeClaim.claimName",
    f"{POD}.containers",
    f"{POD}.containers[]",
    f"{POD}.containers[].name",
    f"{POD}.containers[].volumeMounts",
    f"{POD}.containers[].volumeMounts[]",
    f"{POD}.containers[].volumeMounts[].name",
    f"{POD}.containers[].volumeMounts[].mountPath",
]
LIMITS = ("minLength", "maxLength", "minimum", "maxItems")


def node(schema: dict, path: str) -> dict:
    for part in path.replace("[]", ".[]").replace("{}", ".{}").split("."):
        if part == "[]":
            schema = schema["items"]
        elif part == "{}":
            schema = schema["additionalProperties"]
        else:
            schema = schema["properties"][part]
    return schema


def describe(s: dict) -> tuple[str, str]:
    kind = "quantity" if s.get("x-kubernetes-int-or-string") else s.get("type", "?")
    limits = [f"{k}={s[k]}" for k in LIMITS if k in s]
    if s.get("required"):
        limits.append("required=" + ",".join(s["required"]))
    limits += [f"rule: {v['rule']}" for v in s.get("x-kubernetes-validations", []) if v["rule"] != "self == oldSelf"]
    return kind, "; ".join(limits)


def main(crd_path: str) -> None:
    crd = yaml.safe_load(open(crd_path))
    version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
    root = version["schema"]["openAPIV3Schema"]
    print(f"apiVersion: {crd['spec']['group']}/{version['name']}, kind: {crd['spec']['names']['kind']}\n")
    print("| field | type | limits |\n|---|---|---|")
    kind, limits = describe(root)
    print(f"| (TrainJob) | {kind} | {limits} |")
    for path in FIELDS:
        kind, limits = describe(node(root, path))
        print(f"| `{path}` | {kind} | {limits} |")


if __name__ == "__main__":
    main(sys.argv[1])
