"""Device facts, measured: dtype support, peak matmul throughput per dtype, versions, git sha.

Nothing here comes from a table of hardware specs: a dtype is "supported" when a matmul in it
runs, and "fast" when it measures fast. On the 2-core development CPU, bf16 matmuls measure
several times faster than fp32 (AMX), which a spec table would not tell you.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path
from statistics import median

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
FP8_DTYPES = {"fp8_e4m3": "float8_e4m3fn", "fp8_e5m2": "float8_e5m2"}
SLOW_FACTOR = 0.5  # warn when a dtype reaches less than half of fp32's matmul throughput
LIBRARIES = ["torch", "torchao", "numpy", "scikit-learn", "scipy", "mlflow", "safetensors", "pyarrow"]


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        from trainwise.errors import DeviceError

        raise DeviceError("train.device = 'cuda' but no CUDA device is available (torch was built " + ("without CUDA" if torch.version.cuda is None else f"for CUDA {torch.version.cuda}") + "); use train.device = 'cpu'")
    return torch.device(name)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_matmul_gflops(dtype: torch.dtype, device: torch.device, n: int | None = None, seconds: float = 0.3, repeats: int = 5) -> float:
    """Median achieved GFLOP/s of an n x n matmul in `dtype` over `repeats` timed windows (one call
    after the warm-up when a call takes longer than a window: fp16 on many CPUs takes seconds)."""
    n = n or (8192 if device.type == "cuda" else 1024)
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    for _ in range(2):
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        if time.perf_counter() - t0 >= seconds / repeats:
            t0 = time.perf_counter()
            a @ b
            _sync(device)
            return 2 * n**3 / (time.perf_counter() - t0) / 1e9
    # one probe to size the timed windows
    t0 = time.perf_counter()
    a @ b
    _sync(device)
    per_call = max(time.perf_counter() - t0, 1e-6)
    calls = max(1, int(seconds / repeats / per_call))
    rates = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(calls):
            a @ b
        _sync(device)
        rates.append(2 * n**3 * calls / (time.perf_counter() - t0) / 1e9)
    return median(rates)


GEMM_OPS = ("mm", "addmm", "bmm")  # what linear layers and batched matmuls reach at the aten level


def record_gemm_shapes(run) -> list[tuple[str, tuple, tuple, bool, bool]]:
    """The matmuls that `run()` executes (forward and backward), as (op, shape of a, shape of b,
    a transposed, b transposed), recorded at the aten level by a TorchDispatchMode."""
    from torch.utils._python_dispatch import TorchDispatchMode

    shapes = []

    class Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            if name in GEMM_OPS:
                a, b = args[-2:]  # addmm(bias, a, b): the operands are the last two
                shapes.append((name, tuple(a.shape), tuple(b.shape), _is_transposed(a), _is_transposed(b)))
            return func(*args, **(kwargs or {}))

    with Recorder():
        run()
    return shapes


def _is_transposed(t: torch.Tensor) -> bool:
    # a weight's .t() view: BLAS reads it transposed, which can change the kernel and its speed
    return t.dim() >= 2 and not t.is_contiguous() and t.transpose(-1, -2).is_contiguous()


def gemm_flops(op: str, shape_a: tuple, shape_b: tuple) -> int:
    """2 * m * k * n (times the batch for bmm): one multiply and one add per term."""
    batch = shape_a[0] if op == "bmm" else 1
    m, k = shape_a[-2:]
    return 2 * batch * m * k * shape_b[-1]


def measure_gemm_gflops(shapes: list[tuple], dtype: torch.dtype, device: torch.device, seconds: float = 0.5) -> float | None:
    """Achieved GFLOP/s of the matmuls `shapes` (from `record_gemm_shapes`) run in `dtype`, each as
    often as the model runs it, under the threads now set: the peak the model's own kernels can
    reach, for MFU when the square-matrix probe (`measure_matmul_gflops`) does not represent them.
    Each distinct shape is timed alone (median of 3 windows within its share of `seconds`; one call
    when a single call takes longer, as fp16 GEMMs can on a CPU). None when there are no matmuls."""
    counts = Counter(shapes)
    if not counts:
        return None
    budget_s = seconds / len(counts)
    pass_s = sum(n * _seconds_per_call(_gemm_call(*shape, dtype, device), device, budget_s) for shape, n in counts.items())
    flops_per_pass = sum(gemm_flops(op, a, b) * n for (op, a, b, _, _), n in counts.items())
    return flops_per_pass / pass_s / 1e9


def _seconds_per_call(call, device: torch.device, budget_s: float) -> float:
    _sync(device)
    t0 = time.perf_counter()
    call()  # the first call also selects the kernel: it is the warm-up, and the estimate when slow
    _sync(device)
    first = max(time.perf_counter() - t0, 1e-9)
    if first >= budget_s / 2:
        return first
    calls = max(1, int(budget_s / 3 / first))
    windows = []
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(calls):
            call()
        _sync(device)
        windows.append((time.perf_counter() - t0) / calls)
    return median(windows)


def _gemm_call(op: str, shape_a: tuple, shape_b: tuple, a_t: bool, b_t: bool, dtype: torch.dtype, device: torch.device):
    def operand(shape: tuple, transposed: bool) -> torch.Tensor:
        if not transposed:
            return torch.randn(shape, device=device).to(dtype)
        return torch.randn(*shape[:-2], shape[-1], shape[-2], device=device).to(dtype).transpose(-1, -2)

    a, b = operand(shape_a, a_t), operand(shape_b, b_t)
    if op == "addmm":
        bias = torch.randn(shape_b[-1], device=device).to(dtype)
        return lambda: torch.addmm(bias, a, b)
    return (lambda: torch.bmm(a, b)) if op == "bmm" else (lambda: torch.mm(a, b))


def fp8_support(device: torch.device) -> dict[str, bool]:
    """Whether a real cast to each fp8 format works on this device with the installed torch."""
    out = {}
    for name, attr in FP8_DTYPES.items():
        dt = getattr(torch, attr, None)
        try:
            ok = dt is not None and torch.ones(4, device=device).to(dt).float().sum().item() == 4.0
        except (RuntimeError, TypeError):
            ok = False
        out[name] = ok
    out["fp8_matmul_fast"] = device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 9)
    return out


def device_facts(device: torch.device) -> dict:
    facts = {"device": device.type, "hostname": socket.gethostname(), "platform": platform.platform()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        facts |= {"gpu_name": props.name, "compute_capability": f"{props.major}.{props.minor}", "gpu_memory_bytes": props.total_memory, "gpu_count": torch.cuda.device_count()}
    facts |= {"cpu_model": _cpu_model(), "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    return facts


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cache_path(device: torch.device) -> Path:
    root = Path(os.environ.get("TRAINWISE_CACHE", Path.home() / ".cache" / "trainwise"))
    key = f"{socket.gethostname()}-{device.type}-{torch.__version__}-{torch.get_num_threads()}t"
    return root / f"info-{key}.json"


def collect_info(device: torch.device | None = None, refresh: bool = False) -> dict:
    """Device facts plus measured matmul GFLOP/s per dtype (cached per machine and torch version)."""
    device = device or pick_device("auto")
    cache = _cache_path(device)
    if cache.is_file() and not refresh:
        try:
            return json.loads(cache.read_text())
        except json.JSONDecodeError:
            pass  # a corrupt cache is remeasured
    gflops, supported = {}, {}
    for name, dt in DTYPES.items():
        try:
            gflops[name] = round(measure_matmul_gflops(dt, device), 1)
            supported[name] = True
        except RuntimeError:
            gflops[name], supported[name] = None, False
    supported |= fp8_support(device)
    info = {**device_facts(device), "dtypes_supported": supported, "matmul_gflops": gflops, "warnings": dtype_warnings(gflops, device)}
    info["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    from trainwise.rundir import write_json

    write_json(cache, info)
    return info


def dtype_warnings(gflops: dict[str, float | None], device: torch.device) -> list[str]:
    """Warnings derived from the measurements only."""
    out = []
    base = gflops.get("fp32")
    for name in ("bf16", "fp16"):
        rate = gflops.get(name)
        if rate is None:
            out.append(f"{name} matmuls do not run on this {device.type}; policies using {name} are unavailable")
        elif base and rate < SLOW_FACTOR * base:
            out.append(f"{name} matmuls measured {base / rate:.1f}x slower than fp32 on this {device.type} ({rate:.0f} vs {base:.0f} GFLOP/s): {name} policies will be slower, not faster")
    if device.type == "cpu":
        out.append("fp8 runs as numerics only on CPU (real casts, no fast kernels): use it here to check quality, not speed")
    return out


def library_versions() -> dict[str, str]:
    out = {}
    for lib in LIBRARIES:
        try:
            out[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            out[lib] = None
    out["python"] = platform.python_version()
    out["cuda"] = torch.version.cuda
    return out


def git_sha(path: str | Path = ".") -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (subprocess.SubprocessError, FileNotFoundError, OSError):
        return None


def format_info(info: dict) -> str:
    lines = [f"device: {info['device']}"]
    if info["device"] == "cuda":
        lines.append(f"gpu: {info['gpu_name']} (compute capability {info['compute_capability']})")
    lines.append(f"cpu: {info['cpu_model']}, {info['cpu_cores']} cores, torch threads {info['torch_threads']}")
    lines.append("dtypes supported: " + ", ".join(k for k, v in info["dtypes_supported"].items() if v and not k.endswith("fast")))
    lines.append("measured peak matmul throughput (GFLOP/s, median of 5):")
    for k, v in info["matmul_gflops"].items():
        lines.append(f"  {k:5s} {v if v is not None else 'unsupported'}")
    for w in info["warnings"]:
        lines.append(f"warning: {w}")
    lines.append(f"(measured {info.get('measured_at')}; `trainwise info --refresh` to measure again)")
    return "\n".join(lines)
