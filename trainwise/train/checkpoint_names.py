"""Checkpoints name every tensor as the plain model does (trainwise.rundir.plain_state).

A wrapper's level in a name (activation checkpointing's `blocks.0.block.`, compile's `_orig_mod.`,
DDP's `module.`) depends on settings that may differ between the run that wrote a checkpoint and
the run that resumes it (`memory.ac = auto` can choose differently), so no wrapper level is
written. These functions translate between the plain names and the names a live, wrapped model
uses: its own state_dict keys (one-process checkpoints) and torch.distributed.checkpoint's FQNs
(sharded checkpoints, which strip DDP's and compile's levels but not trainwise's own).
"""

from __future__ import annotations

from torch import nn

from trainwise.rundir import plain_state


def _is_subsequence(short: list[str], long: list[str]) -> bool:
    it = iter(long)
    return all(part in it for part in short)


def plain_name_of_key(model: nn.Module) -> dict[str, str]:
    """{model.state_dict() key: its name in the plain model}.

    Matched by tensor identity; a tensor held under two names (tied weights) is told apart by its
    path: the plain name is the key with wrapper levels left out.
    """
    names_of: dict[int, list[str]] = {}
    for name, t in plain_state(model).items():
        names_of.setdefault(id(t), []).append(name)
    out = {}
    for key, t in model.state_dict(keep_vars=True).items():
        candidates = names_of[id(t)]
        out[key] = (
            candidates[0]
            if len(candidates) == 1
            else next(c for c in candidates if _is_subsequence(c.split("."), key.split(".")))
        )
    return out


def plain_name_of_fqn(model: nn.Module) -> dict[str, str]:
    """{name in torch.distributed.checkpoint's get_state_dict: its name in the plain model}, for the
    model's parameters and buffers (the optimizer's state is keyed by the same names)."""
    # _get_fqns is the function get_state_dict names keys with (torch/distributed/checkpoint/state_dict.py);
    # imported here because torch.distributed.checkpoint takes ~0.7 s and only sharded runs need it
    from torch.distributed.checkpoint.state_dict import _get_fqns

    out = {}
    for key, plain in plain_name_of_key(model).items():
        (fqn,) = _get_fqns(model, key)
        out[fqn] = plain
    return out


def rename_optimizer_state(optim_sd: dict, names: dict[str, str]) -> dict:
    """get_state_dict's optimizer state ({"state": {fqn: ...}, "param_groups": [{"params": [fqn]}]})
    under other names; the tensors are the same objects."""
    return {
        **optim_sd,
        "state": {names[k]: v for k, v in optim_sd["state"].items()},
        "param_groups": [{**g, "params": [names[p] for p in g["params"]]} for g in optim_sd["param_groups"]],
    }
