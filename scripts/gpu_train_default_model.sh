#!/usr/bin/env bash
# Train the default model further on a lent GPU in one call of the device tool, and bring the
# weights back: configs/default_model_gpu.yaml, run for as long as --budget allows
# (scripts/train_within_budget.py renders the data on the machine's cores, times a short probe and
# sets the run's length), then exported as the package stores it (float16, scripts/export_default_model.py).
#
#   Here:   scripts/gpu_check.sh --prepare        (the same wheels as the GPU check, into .gpu/)
#   Device: run(command="bash scripts/gpu_train_default_model.sh", carry=[".gpu"], timeout_s=590)
#           Run the GPU check first (a task's first device call); then this, in the same warm machine.
#   Back here, with the files under files_at:
#           python benchmarks/default_model_card.py --model FILES_AT/default_model.pth --model default
#           python benchmarks/false_detections.py PEOPLE_FREE_PHOTOS --model FILES_AT/default_model.pth
#           then, if it measures better, copy FILES_AT/default_model.pth (already float16, as the
#           package stores it) to src/densepose_torch/assets/default_model.pth
#
# BUDGET (seconds, default 480) covers rendering, the probe, training and the final evaluation; the
# device tool's limit is 600 s a call, and the machine's start is not counted in it. Arguments are
# passed on as config overrides (e.g. `device=cpu data.num_workers=2` to try the script on a CPU).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/out/gpu_train}
BUDGET=${BUDGET:-480}
mkdir -p "$OUT"
if [ -d .gpu/wheels ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/wheels/*.whl \
        > "$OUT/install.log" 2>&1
    export PYTHONPATH="$PWD/src:/tmp/site"
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$OUT/machine.txt" 2>&1
echo "$(nproc) cores" >> "$OUT/machine.txt"

python3 scripts/train_within_budget.py configs/default_model_gpu.yaml --budget "$BUDGET" --report "$OUT/budget.json" "$@" \
    > "$OUT/train.log" 2>&1
status=$?
run=$(python3 -c "import sys; from pathlib import Path; from densepose_torch.training.config import load_train_config; \
print(load_train_config(Path('configs/default_model_gpu.yaml'), sys.argv[1:]).output)" "$@")
for name in config.yaml metrics.jsonl loss_curves.png; do
    cp "$run/$name" "$OUT/" 2>/dev/null
done
if [ -f "$run/model_final.pth" ]; then
    python3 scripts/export_default_model.py "$run/model_final.pth" --output "$OUT/default_model.pth" >> "$OUT/train.log" 2>&1
fi
tail -n 40 "$OUT/train.log" | tr '\r' '\n' | grep -v "^training:" | tail -n 30
ls -la "$OUT"
exit $status
