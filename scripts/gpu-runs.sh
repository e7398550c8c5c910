# Shared by the train-*-gpu.sh scripts (sourced, not run): the run folder, the machine record and
# train NAME FLAGS..., one time-budgeted model.train run whose exit status lands in $RUNS/status,
# and best_run GLOB, the run folder in $RUNS matching GLOB with the lowest validation loss.
# Expects RUNS, BUDGET, DEVICE, EXTRA and PY to be set.
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
mkdir -p "$RUNS"
: > "$RUNS/status"
{ date -u; nvidia-smi -L 2>/dev/null; nproc; $PY -c 'import torch; print("torch", torch.__version__)'; } \
    > "$RUNS/env.txt" 2>&1

train() {
    local name=$1
    shift
    # the hard stop is a backstop: SIGINT saves the state, and the best checkpoint stays whole
    timeout -s INT $((${BUDGET%.*} + 90)) $PY -m model.train --no-progress --threads 2 \
        --device "$DEVICE" --time-budget "$BUDGET" --out "$RUNS/$name" "$@" $EXTRA \
        > "$RUNS/$name.log" 2>&1
    echo "$name exit $?" >> "$RUNS/status"
}

best_run() {
    # prints every candidate's validation record on stderr, the winner's folder name on stdout
    $PY - "$RUNS" "$1" <<'PYEOF'
import json, sys
from pathlib import Path
scores = {}
for d in sorted(Path(sys.argv[1]).glob(sys.argv[2])):
    if (d / "config.json").is_file():
        scores[d.name] = json.loads((d / "config.json").read_text())["training"]["best_val"]
print(json.dumps(scores), file=sys.stderr)
print(min(scores, key=lambda k: scores[k]["val_loss"]))
PYEOF
}
