"""Model cards (Mitchell et al., 2019, "Model Cards for Model Reporting") in Markdown.

Everything on the card is read from the registry: the version's lineage tags, its MLflow run's
summary metrics, its registered eval/metrics.json and the audit trail, so the card states what
was recorded and nothing else.
"""

from __future__ import annotations

import json

from trainwise.registry import audit
from trainwise.registry.lineage import TAG
from trainwise.registry.store import get_client
from trainwise.registry.tracking import flatten, is_number
from trainwise.registry.versions import download_version, get_model, get_version

EFFICIENCY_METRICS = (
    "median_step_ms",
    "tokens_per_s",
    "peak_activation_bytes",
    "peak_memory_bytes",
    "final_val_loss",
    "steps",
)


def _table(header: tuple[str, ...], rows: list) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _slices_as_dicts(metrics: dict) -> dict:
    """`trainwise evaluate` writes each slice column as a list of records {value, n, metrics}; key
    them by value so the slice rows flatten to "slices.<column>.<value>.<metric>"."""
    slices = metrics.get("slices")
    if not isinstance(slices, dict):
        return metrics
    as_dicts = {}
    for column, groups in slices.items():
        if isinstance(groups, list):
            groups = {
                str(g.get("value")): {"n": g.get("n"), **(g.get("metrics") or {})}
                for g in groups
                if isinstance(g, dict)
            }
        as_dicts[column] = groups
    return {**metrics, "slices": as_dicts}


def _metric_sections(metrics: dict) -> list[str]:
    """Overall metrics, then per-slice tables and calibration, from eval/metrics.json (any nesting)."""
    flat = {k: v for k, v in flatten(_slices_as_dicts(metrics)).items() if is_number(v)}
    slice_keys = {k for k in flat if "slice" in k.split(".")[0].lower()}
    calib_keys = {k for k in flat if any(w in k.lower() for w in ("ece", "brier", "calibration"))} - slice_keys
    overall = [(k, _fmt(v)) for k, v in flat.items() if k not in slice_keys | calib_keys]
    out = [
        "## Metrics",
        "",
        *(_table(("metric", "value"), overall) if overall else ["(no numeric metrics recorded)"]),
        "",
    ]
    if calib_keys:
        out += [
            "### Calibration",
            "",
            *_table(("metric", "value"), [(k, _fmt(flat[k])) for k in sorted(calib_keys)]),
            "",
        ]
    if slice_keys:
        rows: dict[str, dict[str, str]] = {}
        for k in sorted(slice_keys):  # "slices.<column>.<value>.<metric>" -> row "<column>.<value>"
            *where, metric = k.split(".")[1:] or [k]
            rows.setdefault(".".join(where) or "-", {})[metric] = _fmt(flat[k])
        cols = sorted({m for r in rows.values() for m in r})
        out += [
            "### Slices",
            "",
            *_table(("slice", *cols), [(s, *(r.get(c, "") for c in cols)) for s, r in rows.items()]),
            "",
        ]
    return out


def _limitations(tags: dict, metrics: dict | None) -> list[str]:
    out = []
    if metrics is None:
        out.append("No evaluation data was registered with this version: quality is unmeasured here.")
    else:
        out.append(
            "Metrics come from the held-out split of the same data source; they say nothing about shifted data (watch "
            "it with `trainwise monitor`)."
        )
        flagged = [
            k for k, v in flatten(metrics).items() if any(w in k.lower() for w in ("flag", "small", "warning")) and v
        ]
        if flagged:
            out.append("Flagged by evaluation: " + ", ".join(flagged[:10]) + ".")
    if tags.get(TAG + "precision", "") in ("bf16-true", "fp16-mixed") or tags.get(TAG + "precision", "").startswith(
        "fp8"
    ):
        out.append(
            f"Trained with {tags[TAG + 'precision']}: low-precision numerics; compare with an fp32 control before "
            "trusting small differences."
        )
    if not tags.get(TAG + "git_sha"):
        out.append("No git commit was recorded: the training code cannot be pinned exactly.")
    return out


def build_card(name: str, version, tracking_uri: str | None = None) -> str:
    """The Markdown model card of `name` version `version`."""
    # Over 60 lines on purpose: the card's Markdown template, its sections in the order the card shows them.
    client = get_client(tracking_uri)
    mv = get_version(client, name, version)
    version = str(mv.version)
    tags = mv.tags
    aliases = [a for a, v in get_model(client, name).aliases.items() if str(v) == version]
    meta = json.loads((download_version(client, mv) / "model.json").read_text())
    eval_dir = download_version(client, mv, "eval")
    metrics = json.loads((eval_dir / "metrics.json").read_text()) if eval_dir else None
    run_metrics = client.get_run(mv.run_id).data.metrics if mv.run_id else {}
    t = lambda k: tags.get(TAG + k, "") or "not recorded"  # noqa: E731
    info = meta.get("info", {})
    lines = [
        f"# Model card: {name} version {mv.version}",
        "",
        f"Aliases held now: {', '.join(aliases) or 'none'}. Registered from run `{t('run_id')}` ({t('run_dir')}).",
        "",
        "## Intended use",
        "",
        f"A `{meta.get('task', '?')}` model of the `{meta.get('workload', '?')}` workload"
        + (
            f", predicting {info.get('target', 'the target')} among classes {', '.join(map(str, info['classes']))}"
            if info.get("classes")
            else ""
        )
        + (f" from {len(info['features'])} features" if info.get("features") else "")
        + ".",
        mv.description or "Use it on data drawn like its training data; check the limitations below first.",
        "",
        "## Training data",
        "",
        *_table(
            ("what", "value"),
            [
                ("workload", t("workload")),
                ("config hash", t("config_hash")),
                ("git sha", t("git_sha")),
                ("seed", t("seed")),
            ]
            + [
                (f"fingerprint ({k[len(TAG + 'data_fingerprint.') :]})", f"`{v}`")
                for k, v in sorted(tags.items())
                if k.startswith(TAG + "data_fingerprint.")
            ],
        ),
        "",
        "## Precision and efficiency",
        "",
        *_table(
            ("setting", "value"),
            [
                ("precision", t("precision")),
                ("activation checkpointing", t("ac")),
                ("parallel strategy", t("strategy")),
                ("world size", t("world_size")),
            ]
            + [(k, _fmt(run_metrics[f"summary.{k}"])) for k in EFFICIENCY_METRICS if f"summary.{k}" in run_metrics],
        ),
        "",
        f"Weights: `weights.safetensors`, sha256 `{t('weights_sha256')}`; the whole model folder (model.json "
        f"included): sha256 `{t('model_sha256')}` (every file checked against the registry on every load).",
        "",
    ]
    lines += (
        _metric_sections(metrics) if metrics is not None else ["## Metrics", "", "No evaluation data registered.", ""]
    )
    if tags.get(TAG + "eval_report_sha256"):
        lines += [f"Evaluation report sha256: `{tags[TAG + 'eval_report_sha256']}`.", ""]
    history = [e for e in audit.read_entries(client, name) if version in (e["to_version"], e["from_version"])]
    lines += ["## Gate history", ""]
    lines += (
        _table(
            ("seq", "when (UTC)", "who", "action", "alias", "from", "to", "verdict", "reason"),
            [
                (
                    e["seq"],
                    e["when"],
                    e["who"],
                    e["action"],
                    e["alias"],
                    e["from_version"] or "-",
                    e["to_version"],
                    e["verdict"],
                    e["reason"] or "-",
                )
                for e in history
            ],
        )
        if history
        else ["Never promoted."]
    )
    lines += ["", "## Known limitations", "", *[f"- {x}" for x in _limitations(tags, metrics)], ""]
    return "\n".join(lines)
