#!/usr/bin/env bash
# The GPU check (issue 14): one script, under 8 minutes on one H100/H200, that writes at most 8 files
# results/measured/gpu_*.md (into $OUT when set: the device tool returns the files there).
#
#   bash scripts/gpu_check.sh [--data DIR] [--dry-run] [--out DIR]
#
# Steps (each with its own time limit; a failing step is recorded and the next one runs):
#   1. tests   the default test suite on CUDA (configs use device=auto, so pipeline tests run on the GPU),
#              `pytest -q -x`, then `tests/unit/data/test_storage.py -k cuda`, then the forced GPU-path and
#              multi-GPU checks for every method (tests/contract/test_forced_gpu_paths.py, its @slow cases too;
#              tests/unit/sweeps/test_multi_gpu.py; issue 22)                             -> gpu_tests.md
#   2. smoke   every method at profile=smoke, device=cuda, on CIFAR-10 JPEG (--data, else
#              ./gpu_data/cifar10-jpeg, else ../shared/data/cifar10-jpeg), digits if none is there
#                                                                             -> gpu_smoke.md
#   3. bench   scripts/bench.py --baseline for DC/DSA/DM at full width IPC 10 -> gpu_bench.md
#   4. ite     scripts/bench_pruning.py (BiLP Table 6 analogue, ITE overhead)  -> gpu_ite.md
#   5. memory  scripts/bench_memory.py --device cuda at 10 and 200 classes     -> gpu_memory.md
#   6. cost    the cost model's ONE efficiency factor (and op time) for this GPU's devices.yaml entry,
#              fitted on ConvNet training steps (scripts/cost_model_cpu.py --calibrate-gpu ENTRY;
#              dry run: the CPU entry's --calibrate)                              -> gpu_cost.md
#   + gpu_summary.md: machine, versions, each step's status and seconds.
# --dry-run runs the same steps at tiny sizes on the CPU (no GPU needed; written to /tmp/gpu_check_dry
# unless --out), so the script itself can be checked anywhere.
#
# On the device machine hydra-core/omegaconf are not installed: carry them in ./.pydeps (copies of the
# pure-Python packages) or as wheels in ./.whl (docs/performance.md, "GPU check"); the script uses them
# when `import hydra` fails.
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
DRY=0
DATA=""
OUTDIR=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --data) DATA="$2"; shift ;;
    --out) OUTDIR="$2"; shift ;;
    *) echo "error: unknown argument $1 (use --data DIR, --dry-run, --out DIR)"; exit 2 ;;
  esac
  shift
done
if [ -z "$OUTDIR" ]; then
  if [ -n "${OUT:-}" ]; then OUTDIR=$OUT
  elif [ $DRY = 1 ]; then OUTDIR=/tmp/gpu_check_dry
  else OUTDIR=$ROOT/results/measured; fi
fi
mkdir -p "$OUTDIR"
PY=${PYTHON:-python3}
[ -x "$ROOT/.venv/bin/python" ] && PY=$ROOT/.venv/bin/python
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 DFDISTILL_CACHE=${DFDISTILL_CACHE:-/tmp/dfdistill_gpu_cache}
if ! $PY -c "import hydra, omegaconf" 2>/dev/null; then
  if [ -d "$ROOT/.pydeps/hydra" ]; then
    export PYTHONPATH=$PYTHONPATH:$ROOT/.pydeps
  elif ls "$ROOT"/.whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$ROOT"/.whl/*.whl \
      && export PYTHONPATH=$PYTHONPATH:/tmp/site
  fi
  $PY -c "import hydra, omegaconf" || { echo "error: hydra-core/omegaconf missing: copy them into ./.pydeps (docs/performance.md, GPU check)"; exit 2; }
fi

if [ $DRY = 1 ]; then
  DEVICE=cpu; WIDTH_BENCH="profile=smoke"; BENCH_WM="-W 0 -M 1"
  T_TESTS=900; T_SMOKE=900; T_BENCH=600; T_ITE=600; T_MEM=300; T_COST=300
  TESTS=(tests/unit/methods/test_chunking.py tests/unit/engine/test_runtime_options.py tests/unit/sweeps/test_multi_gpu.py tests/unit/data/test_augment_cost.py)
  FORCED="not slow"  # the dry run keeps to the default-suite methods
  MEM_ARGS=(--classes 4,8 --batch-real 8 --width 8)
  ITE_ARGS=(-W 0 -M 1 --skip-noopt); ITE_OVR=(profile=smoke)
  export OMP_NUM_THREADS=1
else
  DEVICE=cuda; WIDTH_BENCH="profile=full"; BENCH_WM="-W 1 -M 3"
  T_TESTS=170; T_SMOKE=90; T_BENCH=70; T_ITE=70; T_MEM=35; T_COST=15  # 450 s of steps: under 8 minutes in all
  TESTS=()
  FORCED="slow"  # the other methods (the default suite above ran the rest; on the CPU there too, the staging buffer pinned)
  MEM_ARGS=(--classes 10,200)
  ITE_ARGS=(-W 1 -M 2); ITE_OVR=()
fi
if [ -z "$DATA" ]; then
  for d in "$ROOT/gpu_data/cifar10-jpeg" "$ROOT/../shared/data/cifar10-jpeg"; do [ -d "$d/train" ] && DATA=$d && break; done
fi
if [ -n "$DATA" ] && [ -d "$DATA/train" ]; then
  export DFDISTILL_CIFAR10_JPEG=$DATA; DS="dataset=cifar10_jpeg"; DS_NOTE="CIFAR-10 JPEG from $DATA"
else
  DS="dataset=digits"; DS_NOTE="digits (no CIFAR-10 JPEG folder found; pass --data DIR)"
fi
[ $DRY = 1 ] && DS="dataset=digits" && DS_NOTE="digits (dry run)"

SUMMARY=$OUTDIR/gpu_summary.md
{
  echo "# GPU check ($([ $DRY = 1 ] && echo 'dry run on CPU' || echo "device=$DEVICE"))"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo +dirty)"
  echo "- machine: $($PY -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device")'), $(getconf _NPROCESSORS_ONLN) CPU cores"
  echo "- torch $($PY -c 'import torch; print(torch.__version__)'), python $($PY -c 'import platform; print(platform.python_version())')"
  echo "- data for the smoke/bench steps: $DS_NOTE"
  echo
  echo "| step | status | seconds | file |"
  echo "|---|---|---|---|"
} > "$SUMMARY"

step() {  # step NAME FILE TIMEOUT CMD...: run with a time limit, log to FILE, record status/seconds
  local name=$1 file=$2 limit=$3; shift 3
  local t0=$SECONDS
  local what="$*"; echo "== $name (limit ${limit}s): ${what:0:160}"
  timeout "$limit" "$@" > "$OUTDIR/.$name.log" 2>&1
  local rc=$?
  local status=ok; [ $rc = 124 ] && status="timed out (${limit}s)"; [ $rc != 0 ] && [ $rc != 124 ] && status="failed (rc=$rc)"
  echo "| $name | $status | $((SECONDS - t0)) | $(basename "$file") |" >> "$SUMMARY"
  echo "   $status in $((SECONDS - t0)) s"
  return 0
}

# 1. tests
XD=""; [ $DRY = 0 ] && $PY -c "import xdist" 2>/dev/null && XD="-n 8"
export PY XD TESTS_STR="${TESTS[*]:-}" FORCED
step tests "$OUTDIR/gpu_tests.md" $T_TESTS bash -c '
  echo "## pytest -q -x $XD $TESTS_STR"; echo "\`\`\`"
  $PY -m pytest -q -x -p no:cacheprovider $XD $TESTS_STR 2>&1 | tail -40; a=${PIPESTATUS[0]}
  echo "\`\`\`"; echo "## pytest -q tests/unit/data/test_storage.py -k cuda"; echo "\`\`\`"
  $PY -m pytest -q -p no:cacheprovider tests/unit/data/test_storage.py -k cuda 2>&1 | tail -10; b=${PIPESTATUS[0]}
  echo "\`\`\`"; echo "## pytest -q $XD -m \"$FORCED\" tests/contract/test_forced_gpu_paths.py tests/unit/sweeps/test_multi_gpu.py"; echo "\`\`\`"
  $PY -m pytest -q -p no:cacheprovider $XD -m "$FORCED" tests/contract/test_forced_gpu_paths.py tests/unit/sweeps/test_multi_gpu.py 2>&1 | tail -10
  c=${PIPESTATUS[0]}
  echo "\`\`\`"; exit $((a || b || c))'
{ echo "# GPU check: test suite on $DEVICE"; echo; cat "$OUTDIR/.tests.log"; } > "$OUTDIR/gpu_tests.md"

# 2. every method at profile=smoke
step smoke "$OUTDIR/gpu_smoke.md" $T_SMOKE $PY - "$DEVICE" "$DS" "$OUTDIR/gpu_smoke.md" <<'EOF'
import sys, time, traceback
from pathlib import Path
import tempfile
device, ds, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
from omegaconf import open_dict
from dfdistill.config.compose import compose_run_config
from dfdistill.run.pipeline import run
methods = sorted(p.stem for p in Path("conf/method").glob("*.yaml"))
rows = [f"# GPU check: every method at profile=smoke ({ds}, device={device})", "",
        "| method | status | acc mean | s/iter | peak MB | seconds |", "|---|---|---|---|---|---|"]
tmp = Path(tempfile.mkdtemp())
for m in methods:
    t0 = time.time()
    try:
        cfg = compose_run_config(["logger=none", "profile=smoke", ds, f"method={m}", "ipc=1", f"device={device}"])
        with open_dict(cfg):
            cfg.output_dir, cfg.progress = str(tmp / m), False
        r = run(cfg)
        spi = r.get("sec_per_iter")
        rows.append(f"| {m} | ok | {100 * r['acc_mean']:.1f} | {'—' if spi is None else f'{spi:.3f}'} | "
                    f"{r.get('peak_memory_mb', 0):.0f} | {time.time() - t0:.1f} |")
    except Exception as exc:  # record and go on: the table shows which methods fail on this device
        traceback.print_exc()
        rows.append(f"| {m} | FAILED: {type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''} | | | | {time.time() - t0:.1f} |")
    out.write_text("\n".join(rows) + "\n")
    print(rows[-1], flush=True)
EOF

# 3. bench.py --baseline, DC/DSA/DM at full width IPC 10 (DC/DSA with outer 2 / inner 5 as the CPU table)
bench_cmd() {
  local tmp; tmp=$(mktemp -d)
  for m in dm "dc method.outer_loop=2 method.inner_loop=5" "dsa method.outer_loop=2 method.inner_loop=5"; do
    # shellcheck disable=SC2086
    $PY scripts/bench.py --baseline $BENCH_WM --results-dir "$tmp" $WIDTH_BENCH $DS ipc=10 device=$DEVICE method=$m || echo "bench $m failed"
  done
  { echo "# GPU check: bench.py --baseline ($DS, IPC 10, $WIDTH_BENCH, device=$DEVICE)"; echo; cat "$tmp"/bench_*.md; } > "$OUTDIR/gpu_bench.md"
}
export -f bench_cmd; export BENCH_WM WIDTH_BENCH DS DEVICE OUTDIR
step bench "$OUTDIR/gpu_bench.md" $T_BENCH bash -c "$(declare -f bench_cmd); bench_cmd"

# 4. ITE overhead (BiLP Table 6 analogue)
step ite "$OUTDIR/gpu_ite.md" $T_ITE $PY scripts/bench_pruning.py "${ITE_ARGS[@]}" --out "$OUTDIR/gpu_ite.md" \
  "${ITE_OVR[@]}" $DS device=$DEVICE

# 5. DM/DC peak memory of one step at 10 and 200 classes
step memory "$OUTDIR/gpu_memory.md" $T_MEM $PY scripts/bench_memory.py --device $DEVICE "${MEM_ARGS[@]}" \
  --out "$OUTDIR/gpu_memory.md"

# 6. the cost model's efficiency factor for this GPU (the devices.yaml entry closest to its name)
GPU_NAME=$($PY -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")')
case "$GPU_NAME" in
  *A100*80GB*) ENTRY=a100-80gb ;; *A100*) ENTRY=a100-40gb ;; *4090*) ENTRY=rtx4090 ;;
  *H100*|*H200*) ENTRY=h100 ;;  # H200: no entry of its own; the H100's datasheet peak is its FP32 peak too
  *) ENTRY=a100-80gb ;;
esac
if [ $DRY = 1 ]; then ENTRY=cpu; COST_ARGS=(--calibrate); COST_WHAT="cpu entry (dry run)"; else COST_ARGS=(--calibrate-gpu "$ENTRY"); COST_WHAT="entry $ENTRY on $GPU_NAME"; fi
step cost "$OUTDIR/gpu_cost.md" $T_COST bash -c "$PY scripts/cost_model_cpu.py ${COST_ARGS[*]} > '$OUTDIR/.cost.json'"
{ echo "# GPU check: cost model efficiency factor, $COST_WHAT"; echo
  echo "Copy \`efficiency\` and \`op_us\` into dfdistill/sweeps/devices.yaml (entry $ENTRY) and mark it calibrated."
  echo; echo '```'; cat "$OUTDIR/.cost.json" 2>/dev/null; echo '```'; grep "probe fit" "$OUTDIR/.cost.log" 2>/dev/null; } > "$OUTDIR/gpu_cost.md"
echo "measured cost factor ($COST_WHAT): $(tr -d '\n ' < "$OUTDIR/.cost.json" 2>/dev/null)"
rm -f "$OUTDIR/.cost.json"

echo >> "$SUMMARY"
echo "Logs of failing steps: the tail of each is below." >> "$SUMMARY"
for s in tests smoke bench ite memory cost; do
  if grep -q "| $s | \(failed\|timed\)" "$SUMMARY"; then
    { echo; echo "## $s (log tail)"; echo '```'; tail -25 "$OUTDIR/.$s.log"; echo '```'; } >> "$SUMMARY"
  fi
done
rm -f "$OUTDIR"/.*.log
cat "$SUMMARY"
