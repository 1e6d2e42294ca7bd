"""Device facts, measured: dtype support, peak matmul throughput per dtype, versions, git sha.

Nothing here comes from a table of hardware specs: a dtype is "supported" when a matmul in it
runs, and "fast" when it measures fast. On the 2-core development CPU, bf16 matmuls measure
several times faster than fp32 (AMX), which a spec table would not tell you.
"""

from __future__ import annotations

import contextlib
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
from torch.utils._python_dispatch import TorchDispatchMode

from trainwise.errors import DeviceError
from trainwise.fileio import write_json
from trainwise.train.precision import apply_fp32_matmul

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Matmul kinds `trainwise info` measures besides DTYPES: fp32 operands with TF32 tensor-core
# matmuls allowed (CUDA only: the flag changes nothing on a CPU), and fp8 e4m3 operands through
# torch._scaled_mm with one scale per tensor or one per row of a and column of b (torchao's
# tensorwise and rowwise recipes run exactly these GEMMs), bf16 out.
EXTRA_KINDS = ("tf32", "fp8", "fp8_rowwise")
PEAK_KINDS = ("fp32", "tf32", "bf16", "fp16", "fp8", "fp8_rowwise")
FP8_ALIGN = 16  # _scaled_mm needs every dim a multiple of 16; torchao's filter keeps other layers in bf16
FP8_DTYPES = {"fp8_e4m3": "float8_e4m3fn", "fp8_e5m2": "float8_e5m2"}
SLOW_FACTOR = 0.5  # warn when a dtype reaches less than half of fp32's matmul throughput
LIBRARIES = ["torch", "torchao", "numpy", "scikit-learn", "scipy", "mlflow", "safetensors", "pyarrow"]


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError(
            "train.device = 'cuda' but no CUDA device is available (torch was built "
            + ("without CUDA" if torch.version.cuda is None else f"for CUDA {torch.version.cuda}")
            + "); use train.device = 'cpu'"
        )
    return torch.device(name)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_matmul_gflops(
    dtype: torch.dtype | str, device: torch.device, n: int | None = None, seconds: float = 0.3, repeats: int = 5
) -> float:
    """Median achieved GFLOP/s of an n x n matmul in `dtype` (a torch dtype, or one of PEAK_KINDS)
    over `repeats` timed windows (one call after the warm-up when a call takes longer than a
    window: fp16 on many CPUs takes seconds)."""
    n = n or (8192 if device.type == "cuda" else 1024)
    with matmul_mode(dtype):
        quarter = n // 4
        small = _gemm_call("mm", (quarter, quarter), (quarter, quarter), False, False, dtype, device)
        if quarter >= 16 and min(_one_call_s(small, device) for _ in range(2)) >= seconds / repeats:
            # n^3 would take 64x that, far over the budget (fp16 on the development CPU: 0.13 GFLOP/s,
            # 16 s for one 1024^3 call; 0.3 at 256^3): a kernel this slow is slow at every size, and the
            # verdict (a warning, policies that cannot win) is the same. The faster of two calls
            # decides: the first carries one-time costs, either can be preempted
            return _median_rate(small, 2 * quarter**3, device, seconds, repeats)
        call = _gemm_call("mm", (n, n), (n, n), False, False, dtype, device)
        return _median_rate(call, 2 * n**3, device, seconds, repeats)


def _one_call_s(call, device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    call()
    _sync(device)
    return time.perf_counter() - t0


def _median_rate(call, flops: int, device: torch.device, seconds: float, repeats: int) -> float:
    for attempt in range(2):
        t0 = time.perf_counter()
        call()
        _sync(device)
        elapsed = time.perf_counter() - t0
        if attempt == 0 and elapsed >= seconds:
            return (
                flops / elapsed / 1e9
            )  # one call outlasts the whole budget (fp16 on a CPU: ~10 s); its warm-up costs are lost in it
        if elapsed >= seconds / repeats:
            t0 = time.perf_counter()
            call()
            _sync(device)
            return flops / (time.perf_counter() - t0) / 1e9
    # one probe to size the timed windows
    t0 = time.perf_counter()
    call()
    _sync(device)
    per_call = max(time.perf_counter() - t0, 1e-6)
    calls = max(1, int(seconds / repeats / per_call))
    rates = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(calls):
            call()
        _sync(device)
        rates.append(flops * calls / (time.perf_counter() - t0) / 1e9)
    return median(rates)


@contextlib.contextmanager
def matmul_mode(kind: torch.dtype | str):
    """TF32 matmuls allowed inside the block for kind 'tf32', restored after; a no-op otherwise.

    torch >= 2.9 has `fp32_precision`; reading the legacy `allow_tf32` after the new API was used
    raises, so the new one is used where it exists."""
    if kind != "tf32":
        yield
        return
    flags = torch.backends.cuda.matmul
    attr, value = ("fp32_precision", "tf32") if hasattr(flags, "fp32_precision") else ("allow_tf32", True)
    old = getattr(flags, attr)
    setattr(flags, attr, value)
    try:
        yield
    finally:
        setattr(flags, attr, old)


GEMM_OPS = ("mm", "addmm", "bmm")  # what linear layers and batched matmuls reach at the aten level


def record_gemm_shapes(run) -> list[tuple[str, tuple, tuple, bool, bool]]:
    """The matmuls that `run()` executes (forward and backward), as (op, shape of a, shape of b,
    a transposed, b transposed), recorded at the aten level by a TorchDispatchMode."""
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


def measure_gemm_gflops(
    shapes: list[tuple], dtype: torch.dtype | str, device: torch.device, seconds: float = 0.5
) -> float | None:
    """Achieved GFLOP/s of the matmuls `shapes` (from `record_gemm_shapes`) run in `dtype` (a torch
    dtype, or one of PEAK_KINDS), each as often as the model runs it, under the threads now set:
    the peak the model's own kernels can reach, for MFU when the square-matrix probe
    (`measure_matmul_gflops`) does not represent them. Each distinct shape is timed alone (median
    of 3 windows within its share of `seconds`; one call when a single call takes longer, as fp16
    GEMMs can on a CPU). None when there are no matmuls."""
    counts = Counter(shapes)
    if not counts:
        return None
    budget_s = seconds / len(counts)
    with matmul_mode(dtype):
        pass_s = sum(
            n * _seconds_per_call(_gemm_call(*shape, dtype, device), device, budget_s) for shape, n in counts.items()
        )
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


def _gemm_call(
    op: str, shape_a: tuple, shape_b: tuple, a_t: bool, b_t: bool, dtype: torch.dtype | str, device: torch.device
):
    if dtype in ("fp8", "fp8_rowwise"):
        return _fp8_call(op, shape_a, shape_b, dtype == "fp8_rowwise", device)
    dtype = DTYPES.get(dtype, torch.float32) if isinstance(dtype, str) else dtype  # 'tf32' multiplies fp32 operands

    def operand(shape: tuple, transposed: bool) -> torch.Tensor:
        if not transposed:
            return torch.randn(shape, device=device).to(dtype)
        return torch.randn(*shape[:-2], shape[-1], shape[-2], device=device).to(dtype).transpose(-1, -2)

    a, b = operand(shape_a, a_t), operand(shape_b, b_t)
    if op == "addmm":
        bias = torch.randn(shape_b[-1], device=device).to(dtype)
        return lambda: torch.addmm(bias, a, b)
    return (lambda: torch.bmm(a, b)) if op == "bmm" else (lambda: torch.mm(a, b))


def _fp8_call(op: str, shape_a: tuple, shape_b: tuple, rowwise: bool, device: torch.device):
    """torch._scaled_mm on e4m3 operands (a row-major, b column-major, as the kernel requires and
    torchao lays them out), bf16 out, fast accumulation (torchao's forward GEMM). As in the fp8
    policies, a batched matmul (attention) or a GEMM with a dim not a multiple of 16 runs in bf16.
    The bias of an addmm is left out: torchao adds it outside the fp8 GEMM."""
    m, k = shape_a[-2:]
    n = shape_b[-1]
    if op == "bmm" or m % FP8_ALIGN or k % FP8_ALIGN or n % FP8_ALIGN:
        return _gemm_call(op, shape_a, shape_b, False, False, torch.bfloat16, device)
    a, b, scale_a, scale_b = fp8_operands(m, k, n, rowwise, device)
    return lambda: torch._scaled_mm(a, b, scale_a, scale_b, out_dtype=torch.bfloat16, use_fast_accum=True)


def fp8_operands(m: int, k: int, n: int, rowwise: bool, device: torch.device) -> tuple[torch.Tensor, ...]:
    """a (m, k) row-major and b (k, n) column-major in e4m3 from random normals, with fp32 scales:
    one each (tensorwise), or (m, 1) and (1, n) (rowwise)."""
    e4m3 = torch.float8_e4m3fn
    a = torch.randn(m, k, device=device).to(e4m3)
    b = torch.randn(n, k, device=device).to(e4m3).t()
    if rowwise:
        return a, b, torch.rand(m, 1, device=device) + 0.5, torch.rand(1, n, device=device) + 0.5
    return a, b, torch.tensor(0.75, device=device), torch.tensor(1.25, device=device)


def kind_runs(kind: str, device: torch.device) -> bool:
    return kind != "tf32" or device.type == "cuda"


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
        facts |= {
            "gpu_name": props.name,
            "compute_capability": f"{props.major}.{props.minor}",
            "gpu_memory_bytes": props.total_memory,
            "gpu_count": torch.cuda.device_count(),
        }
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


def _cache_path(device: torch.device, fp32_matmul: str = "ieee") -> Path:
    root = Path(os.environ.get("TRAINWISE_CACHE", Path.home() / ".cache" / "trainwise"))
    key = f"{socket.gethostname()}-{device.type}-{torch.__version__}-{torch.get_num_threads()}t"
    if fp32_matmul == "tf32":  # an fp32 peak measured as TF32 is another figure
        key += "-tf32"
    return root / f"info-{key}.json"


def collect_info(device: torch.device | None = None, refresh: bool = False, allow_tf32: bool = False) -> dict:
    """Device facts plus measured matmul GFLOP/s per dtype (cached per machine, torch version,
    threads and fp32 matmul precision). The fp32 figure is measured as the training runs fp32:
    as TF32 with `allow_tf32` on CUDA (precision.allow_tf32), as IEEE fp32 otherwise."""
    device = device or pick_device("auto")
    fp32_matmul = apply_fp32_matmul(allow_tf32, device)
    cache = _cache_path(device, fp32_matmul)
    if cache.is_file() and not refresh:
        try:
            return json.loads(cache.read_text())
        except json.JSONDecodeError:
            pass  # a corrupt cache is remeasured
    gflops, supported = {}, {}
    for name in (*DTYPES, *EXTRA_KINDS):
        if not kind_runs(name, device):
            continue  # tf32 is a CUDA matmul mode: on a CPU it would measure fp32 again
        try:
            gflops[name] = round(measure_matmul_gflops(DTYPES.get(name, name), device), 1)
            supported[name] = True
        except (RuntimeError, NotImplementedError):
            gflops[name], supported[name] = None, False
    supported |= fp8_support(device)
    info = {
        **device_facts(device),
        "dtypes_supported": supported,
        "matmul_gflops": gflops,
        "fp32_matmul": fp32_matmul,
        "warnings": dtype_warnings(gflops, device),
    }
    info["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

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
            out.append(
                f"{name} matmuls measured {base / rate:.1f}x slower than fp32 on this {device.type} ({rate:.0f} vs "
                f"{base:.0f} GFLOP/s): {name} policies will be slower, not faster"
            )
    if device.type == "cpu":
        out.append(
            "fp8 runs as numerics only on CPU (real casts, no fast kernels): use it here to check quality, not speed"
        )
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
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
    except (subprocess.SubprocessError, FileNotFoundError, OSError):
        return None


def format_info(info: dict) -> str:
    lines = [f"device: {info['device']}"]
    if info["device"] == "cuda":
        lines.append(f"gpu: {info['gpu_name']} (compute capability {info['compute_capability']})")
    lines.append(f"cpu: {info['cpu_model']}, {info['cpu_cores']} cores, torch threads {info['torch_threads']}")
    lines.append(
        "dtypes supported: " + ", ".join(k for k, v in info["dtypes_supported"].items() if v and not k.endswith("fast"))
    )
    lines.append("measured peak matmul throughput (GFLOP/s, median of 5):")
    for k, v in info["matmul_gflops"].items():
        lines.append(f"  {k:11s} {v if v is not None else 'unsupported'}")
    model = info.get("model_gemm")
    if model:
        lines.append(
            f"measured on {model['config']}'s own matmul shapes ({model['distinct_shapes']} distinct, "
            f"{model['gemm_calls']} per forward + backward of a micro-batch of {model['micro_batch_size']}; GFLOP/s):"
        )
        for k, v in model["gflops"].items():
            lines.append(
                f"  {k:11s} "
                f"{v if v is not None else 'not measured: ' + model.get('not_measured', {}).get(k, 'unsupported')}"
            )
    for w in info["warnings"]:
        lines.append(f"warning: {w}")
    lines.append(f"(measured {info.get('measured_at')}; `trainwise info --refresh` to measure again)")
    return "\n".join(lines)
