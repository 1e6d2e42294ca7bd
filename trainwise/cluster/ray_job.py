"""`--emit ray`: a Python script that runs trainwise's training function under Ray Train.

The script builds a `TorchTrainer` whose `train_loop_per_worker` is `train_worker` below, with a
`ScalingConfig` of nnodes x nproc_per_node workers. Ray starts the workers, joins them in one
torch.distributed process group (gloo or nccl, per `TorchConfig`) and sets RANK / WORLD_SIZE /
LOCAL_RANK; `trainwise.train.parallel.setup_distributed` uses a group that is already joined and
leaves it to Ray to close. Every worker calls the same `trainwise.train.loop.train` as
`trainwise train` does, so the run directory is the same as under torchrun.
Needs the optional extra: pip install 'trainwise[ray]'.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from trainwise.config import load_config

TEMPLATE = '''\
#!/usr/bin/env python
"""Ray Train job written by `trainwise launch --emit ray`: {world_size} workers ({nnodes} nodes x {nproc} per node).

Run it on the Ray cluster's head node, or submit it: ray job submit --working-dir . -- python {script_name}
Config (resolved, every default written out): {config_name}, next to this script.
Run directory (on storage every Ray node shares): {run_dir}
"""

from pathlib import Path

from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer

from trainwise.cluster.ray_job import train_worker

CONFIG_TOML = Path(__file__).with_name({config_name!r}).read_text()
RUN_DIR = {run_dir!r}


def main() -> None:
    trainer = TorchTrainer(
        train_worker,  # trainwise.train.loop.train on each worker
        train_loop_config={{"config_toml": CONFIG_TOML, "run_dir": RUN_DIR}},
        torch_config=TorchConfig(backend={backend!r}),
        scaling_config=ScalingConfig(num_workers={world_size}, use_gpu={use_gpu}),
        run_config=RunConfig(name={name!r}, storage_path=str(Path(RUN_DIR).parent / "ray_results")),
    )
    trainer.fit()  # raises if the workers failed (each prints its own error)
    print(f"run: {{RUN_DIR}}")


if __name__ == "__main__":
    main()
'''


def render_ray_script(job) -> str:
    return TEMPLATE.format(
        world_size=job.world_size,
        nnodes=job.nnodes,
        nproc=job.nproc_per_node,
        script_name=job.spec_path.name,
        config_name=job.config_path.name,
        run_dir=job.run_dir,
        backend=job.backend,
        use_gpu=job.gpus,
        name=job.name,
    )


def train_worker(loop_config: dict) -> None:
    """Ray Train's per-worker function: train the config into the run directory.

    A run directory that already holds a run (a job submitted again, or Ray restarting the workers
    after a failure) is resumed from its last checkpoint.
    """
    # lazy: ray is optional and only present on a Ray cluster worker (ray.train)
    import ray.train

    # lazy: the training loop (torch, pandas, sklearn) is needed only on the worker, not when
    # `launch --emit ray` renders the script
    from trainwise.train.loop import train

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.toml"
        path.write_text(loop_config["config_toml"])
        cfg = load_config(path)
    run_dir = Path(loop_config["run_dir"])
    result = train(cfg, run_dir, resume=(run_dir / "config.toml").is_file())
    summary = result.summary
    ray.train.report({k: summary[k] for k in ("status", "steps", "final_train_loss", "final_val_loss", "world_size")})
