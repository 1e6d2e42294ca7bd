"""`--emit slurm`: an sbatch script that runs one torchrun per node with c10d rendezvous.

`srun` starts one task per node (--ntasks-per-node=1); each task runs torchrun, which starts the
node's G processes and joins the rendezvous on the first node of the allocation (found with
`scontrol show hostnames`, as Slurm's own PyTorch examples do). With c10d no node needs a rank:
the rendezvous assigns them. torchrun's restarts (--max-restarts) resume from the last checkpoint.
"""

from __future__ import annotations

import shlex

TEMPLATE = """\
#!/bin/bash
# Written by `trainwise launch --emit slurm`: {world_size} processes ({nnodes} nodes x {nproc} per node).
# Config (resolved, every default written out): {config}
# Submit with: sbatch {script_name}   (the log: slurm-<job id>.out in the directory you submit from)
# Add the #SBATCH --partition/--account/--time lines your site needs.
#SBATCH --job-name={name}
#SBATCH --nodes={nnodes}
#SBATCH --ntasks-per-node=1
{gpu_line}set -euo pipefail

# The first node of the allocation hosts the rendezvous store.
head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
# A restarted group must not reuse the previous attempt's store (pytorch/pytorch#135712).
export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1

srun torchrun \\
    --nnodes "$SLURM_NNODES" \\
    --nproc-per-node {nproc} \\
    --rdzv-backend c10d \\
    --rdzv-endpoint "$head_node:{port}" \\
    --rdzv-id "trainwise-$SLURM_JOB_ID" \\
    --max-restarts {max_restarts} \\
    -m trainwise.cli train {config} --run-dir {run_dir}
"""


def render_sbatch(job) -> str:
    run_dir = job.run_dir.rstrip("/")
    return TEMPLATE.format(
        world_size=job.world_size,
        nnodes=job.nnodes,
        nproc=job.nproc_per_node,
        name=job.name,
        gpu_line=f"#SBATCH --gpus-per-node={job.nproc_per_node}\n" if job.gpus else "",
        script_name=shlex.quote(job.spec_path.name),
        port=job.port,
        max_restarts=job.max_restarts,
        config=shlex.quote(str(job.config_path)),
        run_dir=shlex.quote(run_dir),
    )
