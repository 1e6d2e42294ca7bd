#!/usr/bin/env bash
# GPU proof (issue 17): what trainwise says about GPUs, measured on one GPU in about 8 minutes.
#
#   benchmarks/gpu_proof.sh [--dry-run] [--budget-s SECONDS] [--stages A,B,...] [--work DIR] [OUT_DIR]
#   benchmarks/gpu_proof.sh --print-plan      # the bench stages, one `trainwise bench` line each
#
# OUT_DIR (default $OUT, the device tool's folder) receives at most 5 files, so that all of them
# come back from the device (at most 8 files, 2 folders deep): gpu_proof.log, info.json,
# lm-small_<hardware>_<yyyymmdd>.md and .json (benchmarks/gpu_proof_summary.py), and
# gpu_proof_work.tar.gz (every stage's results, timing, reports and logs; no weights or
# checkpoints). The summary and the archive are rewritten after every stage, so a run cut off by
# the device's time limit still brings back what it measured.
#
# Steps (docs/gpu.md):
#  1. `trainwise info --device cuda --json --refresh --config configs/lm-small.toml`: peak GEMM
#     GFLOP/s for fp32, tf32, bf16, fp16, fp8 and fp8 rowwise (torch._scaled_mm), square 8192^3
#     and on lm-small's own GEMM shapes. Alone on the machine: nothing else runs yet.
#  2. In the background, on the upper half of the CPU cores (the GPU is not used): `trainwise
#     estimate` for {fp32, bf16-mixed, fp8-tensorwise, fp8-rowwise} x {ac none, selective}, then
#     `trainwise numerics` with its FP8 preflight for lm-small on an H200.
#  3. `trainwise bench` in stages, most informative first, each skipped when the time left cannot
#     hold it (predicted from the stages already run) and stopped when it overruns. All stages
#     share one bench folder, so the fp32 control trains once; each stage times its variants and
#     the control again in interleaved rounds.
#  4. The summary: speed-ups with paired 95% intervals, MFU, memory against the estimate, the
#     quality verdicts, and whether the preflight's verdict matched the measured fp8/bf16 ratio.
#
# --dry-run: the same steps on the CPU with a tiny model and a few steps, so the script cannot rot
# where no GPU is lent (tests/test_gpu_proof.py runs it with --stages A). Its figures describe
# nothing: its summary is named lm-small_cpu-dryrun_<date> and says so.
# --stages A,C runs only those stages; --budget-s the total seconds (default 480; dry run 150).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
CONFIG="configs/lm-small.toml"
DRY_RUN=0
PRINT_PLAN=0
BUDGET_S=""
ONLY_STAGES=""
WORK=""
OUT_DIR="${OUT:-}"
ARGS="$*"

while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --print-plan) PRINT_PLAN=1 ;;
    --budget-s) BUDGET_S="$2"; shift ;;
    --stages) ONLY_STAGES="$2"; shift ;;
    --work) WORK="$2"; shift ;;
    -h|--help) sed -n '2,33p' "$0"; exit 0 ;;
    -*) echo "gpu_proof.sh: unknown option $1 (expected --dry-run, --budget-s N, --stages A,B, --work DIR, --print-plan)" >&2; exit 2 ;;
    *) OUT_DIR="$1" ;;
  esac
  shift
done

# ---------------------------------------------------------------------------------------------
# what runs: base settings and the stages

if [ "$DRY_RUN" = 1 ]; then
  DEVICE=cpu
  BUDGET_S="${BUDGET_S:-150}"
  # a 2-block, d_model 64 GPT: every dim a multiple of 16, so FP8 converts its blocks' Linears
  SETS=(train.device=cpu train.threads=1 model.n_layers=2 model.n_heads=2 model.d_model=64 model.context=64
        train.micro_batch_size=4 train.global_batch_size=8 train.steps=4 train.warmup_steps=1 train.eval_batches=2
        data.max_corpus_bytes=300000 bench.timing_rounds=2 bench.timing_steps_per_round=1)
  TRAIN_GUESS_S=10; REST_GUESS_S=30  # before any stage ran: guesses for the first stage's check
else
  DEVICE=cuda
  BUDGET_S="${BUDGET_S:-480}"
  # 50 steps of the recipe's 32 x 1024 tokens: the fp32 control (~0.5 s a step expected on an H200
  # without TF32) trains in under a minute, and the loss has left its first plateau, so the
  # quality gate compares trained models. 8 rounds x 3 steps: a 95% interval needs >= 6 rounds.
  SETS=(train.device=cuda train.steps=50 train.warmup_steps=10 bench.timing_rounds=8 bench.timing_steps_per_round=3)
  TRAIN_GUESS_S=30; REST_GUESS_S=60
fi
# the same for both: the base is eager without AC (so the added fp32 control is the stage-A
# control in every stage), one validation at the end, no intermediate checkpoints, no MLflow
SETS+=(memory.ac=none train.compile=false train.eval_every=0 train.checkpoint_every=0 train.log_every=10
       log.progress=false log.mlflow=false bench.baseline=false)

v() { echo "precision.policy=$1;memory.ac=$2;train.compile=$3"; }
# Stage | what it answers | variants (the fp32 control is added by the bench to every stage)
STAGES=(
  "A|precision, eager, no AC: bf16 vs fp32, fp8 vs bf16 without compile|$(v bf16-mixed none false)|$(v fp8-tensorwise none false)|$(v fp8-rowwise none false)"
  "B|torch.compile, no AC: fp8 vs bf16 as torchao measures it (compiled)|$(v bf16-mixed none true)|$(v fp8-tensorwise none true)|$(v fp8-rowwise none true)"
  "C|selective AC, eager: the memory it saves, estimate vs measured|$(v bf16-mixed selective false)|$(v fp8-tensorwise selective false)|$(v fp8-rowwise selective false)|$(v fp32 selective false)"
  "D|compile + selective AC: the order prepare() applies them|$(v bf16-mixed selective true)|$(v fp8-tensorwise selective true)|$(v fp8-rowwise selective true)"
  "E|fp32 compiled, with and without AC|$(v fp32 none true)|$(v fp32 selective true)"
)

set_args() { for s in "${SETS[@]}"; do printf -- '--set\n%s\n' "$s"; done; }
mapfile -t SET_ARGS < <(set_args)

stage_variant_args() {  # the --variant arguments of stage line $1
  local IFS='|'; read -r -a parts <<< "$1"
  for ((i = 2; i < ${#parts[@]}; i++)); do printf -- '--variant\n%s\n' "${parts[$i]}"; done
}

if [ "$PRINT_PLAN" = 1 ]; then
  for line in "${STAGES[@]}"; do
    mapfile -t VARGS < <(stage_variant_args "$line")
    printf '%s\t' "${line%%|*}" trainwise bench "$CONFIG" "${SET_ARGS[@]}" "${VARGS[@]}"
    echo
  done
  exit 0
fi

if [ -z "$OUT_DIR" ]; then
  echo "gpu_proof.sh: give an output folder (or set \$OUT)" >&2
  exit 2
fi
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
WORK="${WORK:-$(mktemp -d /tmp/gpu-proof.XXXXXX)}"
mkdir -p "$WORK/logs" "$WORK/stages" "$WORK/estimate"
WORK="$(cd "$WORK" && pwd)"
LOG="$OUT_DIR/gpu_proof.log"
: > "$LOG"
START=$(date +%s)
DEADLINE=$((START + BUDGET_S))
DATE=$(date -u +%Y%m%d)
RESERVE_S=20  # the summary and the archive at the end

log() { echo "[gpu_proof +$(( $(date +%s) - START ))s] $*" | tee -a "$LOG"; }
left() { echo $((DEADLINE - $(date +%s))); }

cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TRAINWISE_CACHE="$WORK/cache"
# torchao (FP8) is not on the device image: carry its wheel in .whl/ (docs/gpu.md) and install it here
if ! "$PY" -c "import importlib.util as u; raise SystemExit(u.find_spec('torchao') is None)" && compgen -G ".whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gpu-proof-site .whl/*.whl >> "$LOG" 2>&1 \
    && export PYTHONPATH="$PYTHONPATH:/tmp/gpu-proof-site"
fi
TW=("$PY" -m trainwise.cli)
log "gpu_proof ${ARGS:-} on $(hostname): device $DEVICE, budget ${BUDGET_S}s, work $WORK"
"$PY" -c "import torch, sys, importlib.metadata as m; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda,
    'gpu', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, 'torchao', m.version('torchao'))" 2>&1 | tail -1 | tee -a "$LOG"
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.used,memory.total,clocks.sm,temperature.gpu --format=csv >> "$LOG" 2>&1

summarise() {
  local dry=()
  [ "$DRY_RUN" = 1 ] && dry=(--dry-run)
  "$PY" benchmarks/gpu_proof_summary.py --out "$OUT_DIR" --work "$WORK" --date "$DATE" --command "benchmarks/gpu_proof.sh ${ARGS:-}" "${dry[@]}" >> "$WORK/logs/summary.log" 2>&1 \
    || log "summary failed: $(tail -2 "$WORK/logs/summary.log" | tr '\n' ' ')"
  tar -czf "$OUT_DIR/gpu_proof_work.tar.gz.tmp" -C "$WORK" --exclude=checkpoints --exclude=model --exclude=cache --exclude='*.safetensors' \
      --exclude='*.pt' --exclude='*.distcp' . 2>/dev/null && mv "$OUT_DIR/gpu_proof_work.tar.gz.tmp" "$OUT_DIR/gpu_proof_work.tar.gz"
}

# ---------------------------------------------------------------------------------------------
# 1. peak GEMM throughput, alone on the machine

log "1. trainwise info --device $DEVICE --refresh --config $CONFIG"
if "${TW[@]}" info --device "$DEVICE" --json --refresh --config "$CONFIG" "${SET_ARGS[@]}" > "$WORK/info.json" 2> "$WORK/logs/info.log"; then
  cp "$WORK/info.json" "$OUT_DIR/info.json"
  "$PY" -c "import json,sys; i=json.load(open(sys.argv[1])); print('square GFLOP/s', i['matmul_gflops']); print('model-shape GFLOP/s', i['model_gemm']['gflops'])" "$WORK/info.json" | tee -a "$LOG"
else
  log "info failed: $(tail -3 "$WORK/logs/info.log" | tr '\n' ' ')"
fi

# ---------------------------------------------------------------------------------------------
# 2. estimates and numerics on the CPU, in the background

CORES=$(nproc)
PIN_EST=(); PIN_NUM=()
if command -v taskset > /dev/null && [ "$CORES" -ge 8 ]; then
  # the upper half of the cores, off those the bench's processes start on: one for the estimates
  # (a fake-tensor trace is mostly one thread), the rest for numerics (real fp32 steps)
  PIN_EST=(taskset -c "$((CORES / 2))"); PIN_NUM=(taskset -c "$((CORES / 2 + 1))-$((CORES - 1))")
fi
NUM_THREADS=$(( CORES >= 8 ? CORES / 2 - 1 : 1 ))
# `trainwise estimate CONFIG --set ... --json` for each precision and AC mode, in one interpreter
ESTIMATES='
import contextlib, io, sys
from pathlib import Path
from trainwise.cli import main
out, config, sets = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
for policy in ("fp32", "bf16-mixed", "fp8-tensorwise", "fp8-rowwise"):
    for ac in ("none", "selective"):
        buf = io.StringIO()
        try:
            with contextlib.redirect_stdout(buf):
                rc = main(["estimate", config, *sets, "--set", f"precision.policy={policy}", "--set", f"memory.ac={ac}", "--json"])
        except Exception as e:  # one configuration that cannot be traced leaves the others estimated
            rc = f"{type(e).__name__}: {e}"
        if rc == 0:
            (out / f"{policy}-{ac}.json").write_text(buf.getvalue())
        else:
            print(f"estimate {policy} ac={ac} failed: {rc}")
'
estimates() {
  "${PIN_EST[@]}" nice -n 10 "$PY" -c "$ESTIMATES" "$WORK/estimate" "$CONFIG" "${SET_ARGS[@]}" || echo "estimates failed"
  echo "estimates done after $(( $(date +%s) - START ))s"
}
numerics() {  # the recipe's formats (their flush shares are judged) and bf16; --steps 1: ~50 forward passes of 8 x 1024 tokens on the CPU
  "${PIN_NUM[@]}" nice -n 10 "${TW[@]}" numerics "$CONFIG" --steps 1 --gpu h200 --recipe fp8-tensorwise --formats bf16,e4m3-tensorwise,e5m2-tensorwise \
    --out "$WORK/numerics" "${SET_ARGS[@]}" --set "train.threads=$NUM_THREADS" > "$WORK/logs/numerics.log" 2>&1 || echo "numerics failed"
  echo "numerics done after $(( $(date +%s) - START ))s"
}
log "2. estimates and numerics in the background (${PIN_EST[*]:-unpinned} / ${PIN_NUM[*]:-unpinned}, numerics on $NUM_THREADS threads)"
estimates > "$WORK/logs/estimates_job.log" 2>&1 &
BACKGROUND=($!)
numerics > "$WORK/logs/numerics_job.log" 2>&1 &
BACKGROUND+=($!)

# ---------------------------------------------------------------------------------------------
# 3. the bench, stage by stage

BENCH="$WORK/bench"
# The time a stage needs, predicted from the stages already run: each variant it trains (the
# bench log says how long each took), plus the rest of a stage (the peak probe, the timing phase's
# processes and rounds). A compiled variant compiles in training and again in its timing process:
# until a compiled stage has run, it counts COMPILE_FACTOR times an eager one.
TRAIN_S=$TRAIN_GUESS_S
REST_S=$REST_GUESS_S
COMPILE_FACTOR=2
CONTROL_TRAINED=0
record_stage() { printf '{"stage": "%s", "title": "%s", "status": "%s", "seconds": %s, "reason": "%s", "variants": %s}\n' "$@" >> "$WORK/stages.jsonl"; }
trainings() {  # the seconds of each training in bench log $1 ("[2/4] LABEL (repeat 1/1): ... in 41 s"), the control's left out with $2 = nocontrol
  grep -E '^\[[0-9]+/[0-9]+\] ' "$1" | { [ "${2:-}" = nocontrol ] && grep -v '\] fp32 control ' || cat; } | grep -oE ' in [0-9]+ s$' | grep -oE '[0-9]+'
}

for line in "${STAGES[@]}"; do
  IFS='|' read -r -a parts <<< "$line"
  stage="${parts[0]}"; title="${parts[1]}"; variants=("${parts[@]:2}")
  compiled=0; [[ "$line" == *"train.compile=true"* ]] && compiled=1
  factor=$(( compiled ? COMPILE_FACTOR : 1 ))
  need=$(( (${#variants[@]} * TRAIN_S + REST_S) * factor + (CONTROL_TRAINED ? 0 : 2 * TRAIN_S) ))  # fp32 trains ~2x slower than the rest
  budget=$(( $(left) - RESERVE_S ))
  vjson=$("$PY" -c "import json,sys; print(json.dumps(sys.argv[1:]))" "${variants[@]}")
  if [ -n "$ONLY_STAGES" ] && [[ ",$ONLY_STAGES," != *",$stage,"* ]]; then
    record_stage "$stage" "$title" "not selected" 0 "--stages $ONLY_STAGES" "$vjson"
    continue
  fi
  if [ "$need" -gt "$budget" ]; then
    log "3$stage. skipped: $title (predicted ${need}s, ${budget}s left)"
    record_stage "$stage" "$title" skipped 0 "predicted ${need} s, ${budget} s left" "$vjson"
    continue
  fi
  log "3$stage. trainwise bench: $title (${#variants[@]} variants + the control; predicted ${need}s, stopped after ${budget}s)"
  mapfile -t VARGS < <(stage_variant_args "$line")
  t0=$(date +%s)
  timeout --kill-after=10 "$budget" "${TW[@]}" bench "$CONFIG" "${SET_ARGS[@]}" "${VARGS[@]}" --out "$BENCH" > "$WORK/logs/bench-$stage.log" 2>&1
  rc=$?
  took=$(( $(date +%s) - t0 ))
  grep -E "^\[|^timing:|^recommend|^  not chosen" "$WORK/logs/bench-$stage.log" | tail -n 12 | tee -a "$LOG"
  mkdir -p "$WORK/stages/$stage"
  for f in results.json timing.json recommendation.json report.md; do
    [ -f "$BENCH/$f" ] && [ "$(stat -c %Y "$BENCH/$f")" -ge "$t0" ] && cp "$BENCH/$f" "$WORK/stages/$stage/$f"
  done
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    status=timeout; reason="stopped after ${took} s: over the time left"
  elif [ -f "$WORK/stages/$stage/results.json" ]; then
    status=done; reason="exit code $rc"
  else
    status=failed; reason="exit code $rc: $(tail -1 "$WORK/logs/bench-$stage.log" | tr -d '"\\' | cut -c1-200)"
  fi
  log "3$stage. $status in ${took}s ($reason)"
  record_stage "$stage" "$title" "$status" "$took" "$reason" "$vjson"
  grep -q '^\[[0-9]*/[0-9]*\] fp32 control .* in [0-9]* s$' "$WORK/logs/bench-$stage.log" && CONTROL_TRAINED=1
  if [ "$status" = done ]; then  # what this kind of stage costs, for the next stages' check
    mean=$(trainings "$WORK/logs/bench-$stage.log" nocontrol | awk '{s += $1; n++} END {print (n ? int(s / n) : 0)}')
    rest=$(( took - $(trainings "$WORK/logs/bench-$stage.log" | awk '{s += $1} END {print s + 0}') ))
    if [ "$compiled" = 0 ] && [ "$mean" -gt 0 ]; then
      TRAIN_S=$mean; REST_S=$(( rest > 1 ? rest : 1 ))
    elif [ "$compiled" = 1 ] && [ "$mean" -gt 0 ]; then
      COMPILE_FACTOR=$(( (mean + TRAIN_S - 1) / TRAIN_S ))
    fi
  fi
  summarise
done

# ---------------------------------------------------------------------------------------------
# 4. the background work, then the summary

for pid in "${BACKGROUND[@]}"; do
  while kill -0 "$pid" 2> /dev/null && [ "$(left)" -gt 5 ]; do sleep 2; done
  if kill -0 "$pid" 2> /dev/null; then
    log "background job $pid still running at the deadline: stopped"
    pkill -TERM -P "$pid" 2> /dev/null; kill "$pid" 2> /dev/null
  fi
  wait "$pid" 2> /dev/null
done
grep -hv "^W[0-9]\|Failed to load" "$WORK/logs/estimates_job.log" "$WORK/logs/numerics_job.log" | tee -a "$LOG"
cp "$WORK/numerics/preflight.txt" "$WORK/preflight.txt" 2> /dev/null && head -3 "$WORK/preflight.txt" | tee -a "$LOG"
summarise
log "4. done: $(ls "$OUT_DIR" | tr '\n' ' ')"
SUMMARY=$(ls "$OUT_DIR"/*_"$DATE".md 2> /dev/null | head -1)
[ -n "$SUMMARY" ] && sed -n '/^## Figures/,/^## Variants/p' "$SUMMARY"
exit 0
