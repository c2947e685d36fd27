#!/usr/bin/env bash
# The first run of viddiff_mini on a GPU: everything the GPU path claims, measured once, in
# about 8 minutes of an H100, into one folder with a summary.md.
#
#   bash scripts/gpu_check.sh [--out DIR] [--budget SECONDS] [--skip-install]
#   bash scripts/gpu_check.sh --dry-run      # the same stages on CPU at the tiny preset
#
# Stages (each its own process with its own timeout, under one global time budget, so a
# crash, an OOM or a hung kernel costs one stage, never the run):
#   install  pip install --no-deps --no-build-isolation -e .   (offline; `av` not needed)
#   device   torch / CUDA / GPU name (and nvidia-smi when present)
#   smoke    one eager training step at the real shapes (60 s): loss, step time, peak memory
#            measured vs the memory model's estimate, SDPA calls within the kernels' limits
#   memory   viddiff bench memory (the estimate, no GPU needed)
#   train_unet3d, train_dit   viddiff bench train, eager (FLOPs, MFU, SDPA kernels at the
#            real batch, peak memory)
#   sample, data              viddiff bench sample / data, eager
#   run, resume               viddiff train at the preset for a few steps, then --resume
#   eval                      viddiff eval of that run (probe accuracy, FVD-probe, ...)
#   peers                     viddiff bench peers, eager (peers not installed are skipped)
#   compiled                  viddiff bench train --compile: the one torch.compile, last
# Output: DIR/summary.md, DIR/stages.tsv, DIR/logs/<stage>.log, DIR/bench/*.json, DIR/run/.
# Exit code 0 when every stage succeeded, 1 otherwise (summary.md says which and why).
set -uo pipefail

usage() { sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; }

PROFILE=gpu
OUT=""
BUDGET=""
INSTALL=1
PY="${PYTHON:-python}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run|--tiny) PROFILE=tiny ;;
    --out) OUT="$2"; shift ;;
    --budget) BUDGET="$2"; shift ;;
    --skip-install) INSTALL=0 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

cd "$(dirname "$0")/.." || exit 2
OUT="${OUT:-gpu_check_$(date +%Y%m%d_%H%M%S)}"
mkdir -p "$OUT/logs" "$OUT/bench" || exit 2
OUT="$(cd "$OUT" && pwd)"

if [[ "$PROFILE" == gpu ]]; then
  PRESET=gpu; DEVICE=cuda; BUDGET="${BUDGET:-480}"
  TRAIN_STEPS=(--steps 10 --warmup 3); SAMPLE_STEPS=50; DATA_STEPS=5; PEER_STEPS=(--steps 5 --warmup 2)
  RUN_STEPS=20; RESUME_STEPS=40; EVAL=(--n-per-class 1 --steps 10); BATCH=()
  T_SMOKE=60; T_BENCH=90; T_RUN=100; T_EVAL=60; T_PEERS=90
else
  PRESET=tiny; DEVICE=cpu; BUDGET="${BUDGET:-900}"
  TRAIN_STEPS=(--steps 1 --warmup 0); SAMPLE_STEPS=2; DATA_STEPS=1; PEER_STEPS=(--steps 1 --warmup 0)
  RUN_STEPS=4; RESUME_STEPS=8; EVAL=(--n-per-class 1 --steps 2 --no-fvd); BATCH=(--batch 2)
  T_SMOKE=120; T_BENCH=150; T_RUN=150; T_EVAL=150; T_PEERS=150
fi

START=$(date +%s)
STAGES="$OUT/stages.tsv"
printf 'stage\trc\tseconds\tlimit\tcommand\n' > "$STAGES"
FAILED=0

# stage NAME LIMIT CMD...: run CMD under min(LIMIT, time left) seconds, log, record.
stage() {
  local name="$1" limit="$2"; shift 2
  local now left t s rc e cmd="$*"
  cmd="${cmd//$'\n'/ }"; cmd="${cmd//$'\t'/ }"
  now=$(date +%s); left=$(( BUDGET - (now - START) ))
  if (( left < 10 )); then
    printf '%s\tskipped\t0\t0\t%s\n' "$name" "$cmd" >> "$STAGES"
    echo "[gpu_check] $name: skipped (time budget of ${BUDGET}s used up)"
    FAILED=1; return 0
  fi
  t=$(( limit < left ? limit : left ))
  s=$(date +%s)
  timeout -k 10 "$t" "$@" > "$OUT/logs/$name.log" 2>&1
  rc=$?
  e=$(( $(date +%s) - s ))
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$rc" "$e" "$t" "${cmd:0:300}" >> "$STAGES"
  if (( rc != 0 )); then FAILED=1; fi
  echo "[gpu_check] $name: rc=$rc in ${e}s (limit ${t}s)$([[ $rc == 124 || $rc == 137 ]] && echo ' TIMED OUT')"
  return 0
}

VD=("$PY" -m viddiff_mini.cli)
echo "[gpu_check] profile=$PROFILE preset=$PRESET device=$DEVICE budget=${BUDGET}s out=$OUT"

if (( INSTALL )); then
  stage install 180 "$PY" -m pip install --no-deps --no-build-isolation -e .
fi
stage device 60 "$PY" -c "
import shutil, subprocess, torch
print('torch', torch.__version__, '| cuda', torch.version.cuda, '| available', torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print('gpu', p.name, f'sm{p.major}{p.minor}', f'{p.total_memory / 2**30:.1f} GiB', 'x', torch.cuda.device_count())
if shutil.which('nvidia-smi'):
    print(subprocess.run(['nvidia-smi'], capture_output=True, text=True).stdout)
"
cat "$OUT/logs/device.log" 2>/dev/null | head -3

# (the memory estimate comes from the memory stage: the smoke step spends its minute on the GPU)
stage smoke "$T_SMOKE" "$PY" -m viddiff_mini.benchmarks.smoke --preset "$PRESET" --device "$DEVICE" --no-estimate "${BATCH[@]}" --out "$OUT/bench"
stage memory 60 "${VD[@]}" bench memory --preset "$PRESET" "${BATCH[@]}" --out "$OUT/bench"
stage train_unet3d "$T_BENCH" "${VD[@]}" bench train --preset "$PRESET" --device "$DEVICE" --no-compile "${TRAIN_STEPS[@]}" "${BATCH[@]}" --out "$OUT/bench"
stage train_dit "$T_BENCH" "${VD[@]}" bench train --preset "$PRESET" --model dit --device "$DEVICE" --no-compile "${TRAIN_STEPS[@]}" "${BATCH[@]}" --out "$OUT/bench"
stage sample "$T_BENCH" "${VD[@]}" bench sample --preset "$PRESET" --device "$DEVICE" --steps "$SAMPLE_STEPS" "${BATCH[@]}" --out "$OUT/bench"
stage data "$T_BENCH" "${VD[@]}" bench data --preset "$PRESET" --device "$DEVICE" --steps "$DATA_STEPS" "${BATCH[@]}" --out "$OUT/bench"
stage run "$T_RUN" "${VD[@]}" train --preset "$PRESET" --steps "$RUN_STEPS" --no-compile --quiet --force "${BATCH[@]}" --out "$OUT/run"
stage resume "$T_RUN" "${VD[@]}" train --preset "$PRESET" --steps "$RESUME_STEPS" --no-compile --quiet --resume "${BATCH[@]}" --out "$OUT/run"
stage eval "$T_EVAL" "${VD[@]}" eval "$OUT/run" "${EVAL[@]}"
stage peers "$T_PEERS" "${VD[@]}" bench peers --preset "$PRESET" --device "$DEVICE" "${PEER_STEPS[@]}" "${BATCH[@]}" --out "$OUT/bench"
# the one torch.compile, last: whatever time is left (it is the stage most likely to be slow)
stage compiled 600 "${VD[@]}" bench train --preset "$PRESET" --device "$DEVICE" --compile "${TRAIN_STEPS[@]}" "${BATCH[@]}" --out "$OUT/bench/compiled"

"$PY" - "$OUT" "$PROFILE" "$(( $(date +%s) - START ))" <<'PY' || FAILED=1
import csv, json, sys
from pathlib import Path

out, profile, wall = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
bench = out / "bench"


def load(p):
    try:
        return json.loads(Path(p).read_text())
    except Exception:
        return None


def f(x, spec=".3g"):
    return "n/a" if x is None else format(x, spec)


lines = [f"# viddiff_mini GPU check ({profile} profile)", ""]
dev = (out / "logs" / "device.log")
lines += ["```", dev.read_text().strip()[:1500] if dev.exists() else "(no device log)", "```", ""]
lines += [f"Wall time: {wall} s.", "", "| stage | rc | seconds | limit |", "|---|---:|---:|---:|"]
rows = list(csv.DictReader(open(out / "stages.tsv"), delimiter="\t"))
for r in rows:
    mark = "" if r["rc"] == "0" else " **(failed)**" if r["rc"] != "skipped" else " (skipped)"
    lines.append(f"| {r['stage']}{mark} | {r['rc']} | {r['seconds']} | {r['limit']} |")
lines.append("")

s = load(bench / "smoke.json")
mem = load(bench / "memory.json") or {}
if s:
    s.setdefault("memory_estimate_gib", None)
    if s["memory_estimate_gib"] is None and mem.get("batch") == s["batch"]:
        s["memory_estimate_gib"] = mem.get("estimate_gib")
    lines += ["## Smoke step", "",
              f"{s['model']} batch {s['batch']} x {s['frames']}x{s['size']}^2: step "
              f"{f(s['step_s'])} s (first {f(s['first_step_s'])} s), loss {f(s['loss'], '.4f')}, "
              f"peak memory {f(s['peak_memory_gb'], '.2f')} GiB measured vs "
              f"{f(s.get('memory_estimate_gib'), '.2f')} GiB estimated; {s['sdpa_calls']} SDPA "
              f"calls, largest batch {s['sdpa_max_batch']}, violations: "
              f"{s['sdpa_violations'] or 'none'}", ""]

lines += ["## Benchmarks", "", "| row | figures |", "|---|---|"]
for name in ["memory", "train_unet3d", "train_dit", "sample", "data", "compiled"]:
    r = load(bench / f"{name}.json") if name != "compiled" else (
        load(bench / "compiled" / "train_unet3d_compiled.json")
        or load(bench / "compiled" / "train_unet3d.json"))  # CPU: compile is ignored
    if r is None:
        lines.append(f"| {name} | no result (see logs/) |")
    elif r.get("error"):
        lines.append(f"| {name} | **failed**: {r['error']} |")
    elif r["benchmark"] == "train":
        sd = r.get("sdpa") or {}
        lines.append(f"| {name} | {f(r['step_s'])} s/step, {f(r['clips_per_s'])} clips/s, "
                     f"{f(r['achieved_tflops'])} TFLOP/s, MFU "
                     f"{'n/a' if r['mfu'] is None else format(100 * r['mfu'], '.1f') + '%'}, "
                     f"compiled {r['compile']}, "
                     f"peak {f(r['peak_memory_gb'], '.2f')} GiB, SDPA {sd.get('selected')} "
                     f"(flash: {sd.get('flash', 'n/a')}) |")
    elif r["benchmark"] == "memory":
        lines.append(f"| {name} | estimate {r['estimate_gib']} GiB at batch {r['batch']}; "
                     f"largest batch {json.dumps({k: v['largest_batch'] for k, v in r['fits'].items()})} |")
    elif r["benchmark"] == "sample":
        lines.append(f"| {name} | DDIM-{r['steps']}: {f(r['clips_per_s'])} clips/s |")
    elif r["benchmark"] == "data":
        lines.append(f"| {name} | render {f(r['render_clips_per_s'])} clips/s vs train "
                     f"{f(r['train_clips_per_s'])}: ratio {f(r['ratio'])} (target {r['target_ratio']}) |")
lines.append("")

p = load(bench / "peers.json")
if p and not p.get("error"):
    sys.path.insert(0, str(Path.cwd()))
    from viddiff_mini.benchmarks.peers import peers_table
    lines += ["## Peers (eager, same step)", "", peers_table(p), "",
              f"Fastest size-matched peer: {p.get('fastest_peer')}", ""]
elif p:
    lines += ["## Peers", "", f"failed: {p['error']}", ""]

run = load(out / "run" / "summary.json")
if run:
    lines += ["## Training run (with a mid-run --resume)", "",
              f"{run['step']} steps, final loss {f(run['final_loss'], '.4f')}, "
              f"{f(run['clips_per_s'])} clips/s, stop: {run['stop_reason']}, "
              f"peak {f(run.get('peak_memory_gb'), '.2f')} GiB", ""]
ev = load(out / "run" / "eval.json")
if ev:
    keys = {k: v for k, v in ev.items() if isinstance(v, (int, float))}
    lines += ["## Eval", "", "```", json.dumps(keys, indent=1)[:2000], "```", ""]
(out / "summary.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY

echo "[gpu_check] done in $(( $(date +%s) - START ))s: $OUT/summary.md"
exit "$FAILED"
