"""FP8 preflight: will FP8 pay for each Linear layer on a named GPU class, and is it safe?

Speed is a roofline estimate, not a measurement (this machine has no such GPU; the verdicts are
for the named class and untested here). For one training step a Linear runs three GEMMs of
2*M*K*N FLOPs (forward, grad-input, grad-weight). Each GEMM takes max(FLOPs / peak, bytes /
bandwidth). FP8 halves the GEMM time at best, but adds memory-bound work per operand (input
M*K, weight K*N, grad-output M*N): an amax read (2 B/elem, bf16), a cast read (2 B) and fp8
write (1 B), and a transposed fp8 copy for the backward GEMM (1 B): 6 B per element.

That overhead is why small layers lose: torchao's float8 README (section "Performance") shows
Float8Linear slower than bf16 for small K and N and faster only once the GEMMs are a few thousand
wide, and pytorch/ao#1297 reports a 1.5B GPT at 240 TFLOP/s in fp8 versus 493 in bf16 on H100.
The shape rule below (M, K, N >= 2048) is trainwise's reading of that table; the roofline decides.
"""

from __future__ import annotations

from trainwise.errors import TrainwiseError

# Dense peak TFLOP/s and HBM TB/s from NVIDIA's datasheets (H100 SXM5, H200 SXM, L4).
GPU_CLASSES = {
    "h100": {"label": "H100 SXM", "bf16_tflops": 989.4, "fp8_tflops": 1978.9, "hbm_tbps": 3.35},
    "h200": {"label": "H200 SXM", "bf16_tflops": 989.4, "fp8_tflops": 1978.9, "hbm_tbps": 4.8},
    "l4": {"label": "L4", "bf16_tflops": 121.0, "fp8_tflops": 242.5, "hbm_tbps": 0.3},
    "a100": {"label": "A100 SXM (no fp8 tensor cores)", "bf16_tflops": 312.0, "fp8_tflops": None, "hbm_tbps": 2.04},
}
MIN_DIM = 2048  # shape rule: M, K and N all at least this (see module docstring)
CAST_BYTES_PER_ELEM = 6
MIN_SPEEDUP = 1.0


def _gemm_s(m: int, k: int, n: int, tflops: float, tbps: float, operand_bytes: int) -> float:
    flops = 2 * m * k * n
    bytes_moved = operand_bytes * (m * k + k * n) + 2 * m * n  # bf16 output
    return max(flops / (tflops * 1e12), bytes_moved / (tbps * 1e12))


def layer_speed(m: int, k: int, n: int, gpu: str = "h100") -> dict:
    """Roofline step time of one Linear in bf16 and in fp8 (forward + backward), and the verdict."""
    spec = GPU_CLASSES[gpu]
    shapes = [(m, k, n), (m, n, k), (k, m, n)]  # forward, grad-input, grad-weight
    bf16_s = sum(_gemm_s(*s, spec["bf16_tflops"], spec["hbm_tbps"], 2) for s in shapes)
    if spec["fp8_tflops"] is None:
        return {
            "bf16_us": bf16_s * 1e6,
            "fp8_us": None,
            "speedup": None,
            "shape_rule": False,
            "pays": False,
            "why": f"{spec['label']} has no fp8 tensor cores",
        }
    gemm_s = sum(_gemm_s(*s, spec["fp8_tflops"], spec["hbm_tbps"], 1) for s in shapes)
    cast_s = CAST_BYTES_PER_ELEM * (m * k + k * n + m * n) / (spec["hbm_tbps"] * 1e12)
    speedup = bf16_s / (gemm_s + cast_s)
    shape_ok = min(m, k, n) >= MIN_DIM
    pays = speedup > MIN_SPEEDUP and shape_ok
    why = f"estimated {speedup:.2f}x" + ("" if shape_ok else f"; GEMM {m}x{k}x{n} below the {MIN_DIM} shape rule")
    return {
        "bf16_us": bf16_s * 1e6,
        "fp8_us": (gemm_s + cast_s) * 1e6,
        "cast_us": cast_s * 1e6,
        "speedup": speedup,
        "shape_rule": shape_ok,
        "pays": pays,
        "why": why,
    }


def check_gpu(gpu: str) -> str:
    if gpu != "any" and gpu not in GPU_CLASSES:
        raise TrainwiseError(
            f"GPU class {gpu!r} is not known; expected one of {', '.join(GPU_CLASSES)} or 'any' (numerics only)"
        )
    return gpu


def preflight(layers: dict, safety: dict, gpu: str = "h100", eligible: set | None = None) -> dict:
    """Per Linear layer: speed verdict on `gpu` ('any' skips speed) and numerics safety; model verdict.

    layers: the probe's result; safety: {name: [reasons it is unsafe]}; eligible: the layers the
    trainer's FP8 filter would convert (others stay high precision whatever the verdict)."""
    check_gpu(gpu)
    per_layer = {}
    for name, r in layers.items():
        if r["type"] != "Linear":
            continue
        m, k, n = r["shape"]["M"], r["shape"]["K"], r["shape"]["N"]
        speed = layer_speed(m, k, n, gpu) if gpu != "any" else {"pays": True, "why": "speed not judged (gpu = 'any')"}
        reasons = safety.get(name, [])
        is_eligible = eligible is None or name in eligible
        per_layer[name] = {
            "gemm": [m, k, n],
            "speed": speed,
            "safe": not reasons,
            "unsafe_reasons": reasons,
            "fp8_eligible": is_eligible,
            "use_fp8": speed["pays"] and not reasons and is_eligible,
        }
    fp8 = [n for n, v in per_layer.items() if v["use_fp8"]]
    largest = max(per_layer.items(), key=lambda kv: kv[1]["gemm"][1] * kv[1]["gemm"][2], default=None)
    label = GPU_CLASSES[gpu]["label"] if gpu != "any" else "any GPU"
    if not per_layer:
        verdict = "FP8 does not apply: the model has no nn.Linear layers"
    elif not fp8:
        paying = [n for n, v in per_layer.items() if v["speed"]["pays"]]
        k, n = largest[1]["gemm"][1:]
        verdict = (
            f"FP8 will not pay for this model on {label}: its largest GEMM is {k}x{n} (K x N) at M = "
            f"{largest[1]['gemm'][0]}"
            if not paying
            else f"FP8 is unsafe for every layer where it would pay on {label}"
        )
    else:
        verdict = (
            f"FP8 is expected to pay on {label} for {len(fp8)} of {len(per_layer)} Linear layers; keep the rest in bf16"
        )
    return {"gpu": gpu, "layers": per_layer, "fp8_layers": fp8, "verdict": verdict}


def preflight_text(pf: dict) -> str:
    """`trainwise info`-style plain text."""
    lines = [
        f"FP8 preflight ({pf['gpu']}): {pf['verdict']}",
        "  layer                          GEMM (MxKxN)         speed        safe  use fp8",
    ]
    for name, v in pf["layers"].items():
        m, k, n = v["gemm"]
        sp = v["speed"].get("speedup")
        lines.append(
            f"  {name:30s} {f'{m}x{k}x{n}':20s} {(f'{sp:.2f}x' if sp else '-'):12s} {'yes' if v['safe'] else 'NO':5s} "
            f"{'yes' if v['use_fp8'] else 'no'}"
            + ("" if v["safe"] else f"  ({'; '.join(v['unsafe_reasons'])})")
            + (
                ""
                if v["fp8_eligible"]
                else "  (not converted by the FP8 filter: output head or dims not multiples of 16)"
            )
        )
    return "\n".join(lines)
