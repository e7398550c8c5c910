#!/usr/bin/env bash
# GPU and many-core figures in one run (about 6 minutes on one H200 with 16 cores):
#
#   1. 28x28 denoise against the bare endpoint (bench.run, ops bare,denoise) at 32 and 128
#      connections, with 1, 4 and 8 uvicorn workers (the bare endpoint with as many);
#   2. the photo denoiser at 512² and 2048², gray and RGB, one image at a time: megapixels/s and
#      peak GPU memory in-process, megapixels/s through the service (scripts/bench-gpu-photo.sh);
#   3. summary.md: the workers x connections table, the photo table, the GPU memory peaks.
#
#   OUT=/path bash scripts/bench-gpu.sh          # results in $OUT (default bench/results/gpu-<time>)
#
# Knobs (environment): WORKERS_LIST ("1 4 8"), CONNS ("32,128"), OPS ("bare,denoise"; bench.run's
# names), DURATION (8 s per wrk run), WARMUP (2 s), REPEATS (1 round per connection count),
# PHOTO_SIZES ("512 2048"), PHOTO_REPEATS (3), PHASE_TIMEOUT (170 s, each bench.run), BUDGET (420 s:
# no phase starts after it), PYTHON (python3). Every phase has its own timeout, so a hung one costs
# its share of the run, not all of it; a failed phase is reported and the rest run. Estimate with
# the defaults: bench.run ~85 s per worker count (servers up, its in-process limits, 2 ops x 2
# connection counts x (2 + 8) s), photo ~60 s, setup ~20 s: ~6 min; allow about 9 minutes.
# On a machine without network, bring .whl and .tools (below) with the checkout.
#
# A GPU machine without network may have Python and a CUDA torch but no FastAPI stack and no wrk:
# scripts/bench-gpu-prep.sh (on a machine with pip and apt) puts the wheels in .whl and wrk in
# .tools; copy both. Where the stack is already importable and wrk installed, nothing is
# installed: a dry run on a CPU machine, e.g.
#   WORKERS_LIST="1 2" CONNS=32 DURATION=1 WARMUP=1 PHOTO_SIZES="64 128" PHOTO_REPEATS=1 \
#       OUT=/tmp/gpu-dry bash scripts/bench-gpu.sh
set -u
cd "$(dirname "$0")/.."
WHEELS=${WHEELS:-.whl}
TOOLS=${TOOLS:-.tools}
LIB=${LIB:-.pylib}
PY=${PYTHON:-python3}
WORKERS_LIST=${WORKERS_LIST:-1 4 8}
CONNS=${CONNS:-32,128}
OPS=${OPS:-bare,denoise}
DURATION=${DURATION:-8}
WARMUP=${WARMUP:-2}
REPEATS=${REPEATS:-1}
PHOTO_SIZES=${PHOTO_SIZES:-512 2048}
PHOTO_REPEATS=${PHOTO_REPEATS:-3}
PHASE_TIMEOUT=${PHASE_TIMEOUT:-170}
BUDGET=${BUDGET:-420}
OUT=${OUT:-bench/results/gpu-$(date -u +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export PYTHONUNBUFFERED=1 AESERVE_LOG_LEVEL=warning
start=$SECONDS
failed=()
log() { printf '[%4d s] %s\n' $((SECONDS - start)) "$*" | tee -a "$OUT/progress.txt" >&2; }

# --- the serving stack and wrk, when missing -----------------------------------------------------
if ! $PY -c 'import fastapi, uvicorn, multipart, imagecodecs, pydantic_settings, prometheus_client, httpx' \
        2>/dev/null; then
    [ -d "$WHEELS" ] || { log "no serving stack and no $WHEELS: run scripts/bench-gpu-prep.sh first"; exit 1; }
    log "installing the serving stack from $WHEELS into $LIB"
    # every wheel prep downloaded, without resolving (pip --target would not see the machine's own
    # numpy and torch); numpy only where the machine's is too old for imagecodecs
    # shellcheck disable=SC2046
    $PY -m pip install -q --no-index --no-deps --target "$LIB" $(ls "$WHEELS"/*.whl | grep -v /numpy-) \
        > "$OUT/pip.log" 2>&1 || { log "installing the serving stack failed:"; tail -5 "$OUT/pip.log" >&2; exit 1; }
    export PYTHONPATH="$PWD/$LIB${PYTHONPATH:+:$PYTHONPATH}"
    if ! $PY -c 'import imagecodecs' 2>/dev/null; then
        log "the machine's numpy is too old for imagecodecs: installing numpy from $WHEELS"
        $PY -m pip install -q --no-index --no-deps --target "$LIB" "$WHEELS"/numpy-*.whl >> "$OUT/pip.log" 2>&1
        $PY -c 'import imagecodecs' || { log "imagecodecs does not import"; exit 1; }
    fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ! command -v wrk >/dev/null; then
    mkdir -p "$TOOLS/root"
    for deb in "$TOOLS"/*.deb; do dpkg -x "$deb" "$TOOLS/root"; done
    export PATH="$PWD/$TOOLS/root/usr/bin:$PATH"
    export LD_LIBRARY_PATH="$PWD/$TOOLS/root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
{
    date -u
    if command -v nvidia-smi >/dev/null; then nvidia-smi -L; else echo "no nvidia-smi"; fi
    echo "cores: $(nproc)"
    $PY -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__,
"cuda", torch.cuda.is_available())'
    wrk --version 2>&1 | head -1
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt" >&2
$PY -c 'import app.main, bench.run, bench.photo' || { log "the service does not import"; exit 1; }

# GPU memory in use on the whole device (every worker's process), sampled every 200 ms per phase
sampler=
gpu_sample() {  # gpu_sample NAME: start sampling into gpu-NAME.csv; gpu_sample (no name): stop
    [ -n "$sampler" ] && { kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null; sampler=; }
    if [ $# -gt 0 ] && command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu --format=csv,noheader,nounits \
            -lms 200 > "$OUT/gpu-$1.csv" 2>/dev/null &
        sampler=$!
    fi
}
phase() {  # phase NAME SECONDS CMD...: run CMD under a timeout (SIGINT first: servers are stopped)
    local name=$1 limit=$2 rc=0
    shift 2
    if ((SECONDS - start > BUDGET)); then failed+=("$name (skipped: past BUDGET)"); log "$name skipped"; return; fi
    log "$name ..."
    gpu_sample "$name"
    timeout -s INT -k 15 "$limit" "$@" > "$OUT/$name.log" 2>&1 || rc=$?
    gpu_sample
    # keep the logs small: the tail is what tells what went wrong
    if [ "$(stat -c %s "$OUT/$name.log")" -gt 2000000 ]; then
        tail -c 2000000 "$OUT/$name.log" > "$OUT/$name.log.tail" && mv "$OUT/$name.log.tail" "$OUT/$name.log"
    fi
    if ((rc)); then failed+=("$name (exit $rc)"); log "$name FAILED (exit $rc): tail of $name.log:"
        tail -5 "$OUT/$name.log" >&2
    else log "$name done"; fi
}

# --- 1. 28x28 denoise vs bare, workers x connections -----------------------------------------------
for n in $WORKERS_LIST; do
    phase "run-w$n" "$PHASE_TIMEOUT" $PY -m bench.run --workers "$n" --connections "$CONNS" \
        --ops "$OPS" --repeats "$REPEATS" --duration "$DURATION" --warmup "$WARMUP" \
        --out "$OUT/run-w$n"
done
# --- 2. photo denoiser: in-process and through the service ----------------------------------------
# shellcheck disable=SC2086
phase photo 240 bash scripts/bench-gpu-photo.sh "$OUT/photo.json" "$PHOTO_REPEATS" $PHOTO_SIZES
# --- 3. summary ------------------------------------------------------------------------------------
$PY - "$OUT" > "$OUT/summary.md" <<'PYEOF' || failed+=("summary")
import csv, json, sys
from pathlib import Path

out = Path(sys.argv[1])
print("# GPU and many-core benchmark\n")
print("```\n" + (out / "env.txt").read_text().strip() + "\n```\n")


def gpu_peak(name):
    path = out / f"gpu-{name}.csv"
    if not path.exists():
        return "-"
    rows = [r for r in csv.reader(path.open()) if len(r) >= 3]
    return f"{max(int(r[1]) for r in rows)} MiB" if rows else "-"


runs = []  # the newest result of each worker count: an OUT used before keeps its older runs
for run_dir in sorted((p for p in out.glob("run-w*") if p.is_dir()), key=lambda p: int(p.name[5:])):
    if results := sorted(run_dir.glob("*.json")):
        runs.append((int(run_dir.name[5:]), json.loads(results[-1].read_text())))
bares = sorted({r["op"] for _, raw in runs for r in raw["results"] if r["op"].startswith("bare")})
print("## 28x28 denoise vs the bare endpoint (same workers)\n")
print("| workers | conns | " + " | ".join(f"{b} req/s" for b in bares) + " | denoise req/s | "
      + " | ".join(f"denoise / {b}" for b in bares) + " | denoise p50 ms | p99 ms | p99/p50 | non-200 "
      "| service RSS MiB | GPU memory (device) |")
print("|" + "---:|" * (2 * len(bares) + 6) + "---|---:|---:|")
for workers, raw in runs:
    by = {(r["op"], r["connections"]): r for r in raw["results"]}
    for conns in sorted({c for _, c in by}):
        den = by.get(("denoise", conns))
        if den is None:
            continue
        base = [by.get((b, conns)) for b in bares]
        p50, p99 = den["p50_us"] / 1000, den["p99_us"] / 1000
        others = {k: v for k, v in den["statuses"].items() if k != "200"}
        if den["socket_errors"]:
            others["socket errors"] = den["socket_errors"]
        cells = [f"{b['rps']:.0f}" if b else "-" for b in base] + [f"{den['rps']:.0f}"]
        cells += [f"{den['rps'] / b['rps']:.2f}" if b else "-" for b in base]
        cells += [f"{p50:.2f}", f"{p99:.2f}", f"{p99 / p50 if p50 else 0:.1f}",
                  ", ".join(f"{k}: {v}" for k, v in others.items()) or "-",
                  f"{den['peak_rss_mib']:.0f}", gpu_peak(f"run-w{workers}")]
        print(f"| {workers} | {conns} | " + " | ".join(cells) + " |")
if runs:
    lim = runs[0][1]["limits"]
    print(f"\nIn-process limit (device {lim['device']}, runtime {lim['runtime']}, batch {lim['batch']}): "
          f"denoise {lim['denoise']:.0f} img/s, batch 1 {lim['denoise_batch1']:.0f}/s. Rounds per cell: "
          f"{len(runs[0][1]['results'][0]['rounds_rps'])} (bench.run keeps the median).")

print("\n## Photo denoiser, one image at a time\n")
path = out / "photo.json"
photo = json.loads(path.read_text()) if path.exists() else {"rows": []}
print(f"device {photo.get('device', '?')} ({photo.get('gpu') or 'no GPU'}), torch threads "
      f"{photo.get('torch_threads', '?')}, medians of {photo.get('repeats', '?')}; the service with "
      f"AESERVE_MAX_WORK={photo.get('service_max_work', '?')}\n")
print("| image | in-process ms | in-process MP/s | peak allocated MiB | peak reserved MiB | PNG MiB "
      "| service ms | service MP/s |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for r in photo["rows"]:
    svc = (f"{r['png_mib']} | {r['service_ms']:.0f} | {r['service_mp_per_s']:.3g}"
           if "service_ms" in r else "- | - | -")
    print(f"| {r['mode']} {r['size']}² | {r['ms']:.1f} | {r['mp_per_s']:.3g} | "
          f"{r['peak_allocated_mib'] if r['peak_allocated_mib'] is not None else '-'} | "
          f"{r['peak_reserved_mib'] if r['peak_reserved_mib'] is not None else '-'} | {svc} |")
peaks = [f"{p.stem[4:]} {gpu_peak(p.stem[4:])}" for p in sorted(out.glob("gpu-*.csv"))]
print("\nGPU memory in use on the device (nvidia-smi, all processes), peak per phase: "
      + (", ".join(peaks) or "not sampled (no nvidia-smi)") + ".")
PYEOF
cat "$OUT/summary.md"
log "total $((SECONDS - start)) s; results in $OUT"
if ((${#failed[@]})); then log "FAILED: ${failed[*]}"; exit 1; fi
