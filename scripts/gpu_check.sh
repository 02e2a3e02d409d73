#!/usr/bin/env bash
# The project's one prepared GPU run: the CUDA tests (pytest -m gpu) and the throughput benchmark,
# written up as one markdown report. It has two halves.
#
#   Here, once per session (needs PyPI and ../shared):
#       scripts/gpu_check.sh --prepare
#     puts into .gpu/ (git-ignored) the wheels the GPU machine's image lacks, built for its
#     Python 3.12, and the golden cases the GPU tests read (astronaut image, five architectures).
#
#   On the GPU machine, through the device tool:
#       run(command="bash scripts/gpu_check.sh", carry=[".gpu"], timeout_s=540)
#     installs those wheels into /tmp/site, runs the tests marked gpu (inference, the service and a
#     few training steps) and
#     benchmarks/bench_throughput.py (R_50_FPN_s1x, 800 px, batches 1, 8, 16, exact and fast),
#     and writes $OUT/gpu_report.md (plus the logs) to come back. On an H200 the whole check took
#     about 90 s (2026-12-04), the machine's start about 30 s more; each step has its own time limit
#     so that the report is written whatever happens.
#     Copy the report into docs/gpu.md.
set -uo pipefail
cd "$(dirname "$0")/.."

# What the GPU image (torch, numpy, pillow, opencv, scipy, pyyaml, tqdm, httpx, pytest, jinja2,
# anyio, h11, click, typing-extensions, annotated-doc are there) does not have, at the versions
# this project is tested with.
WHEELS=(
    pycocotools==2.0.11 fastapi==0.165.0 starlette==1.10.0 uvicorn==0.55.0 python-multipart==0.0.34
    pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
    swagger-ui-bundle-v2==5.31.0 opentelemetry-api==1.45.2
)
GOLDEN_ARCHITECTURES=(R_50_FPN_s1x_legacy R_50_FPN_s1x R_50_FPN_DL_WC2M_s1x R_101_FPN_WC1_s1x R_50_FPN_DL_WC1M_3x_Atop10P_CA)

if [ "${1:-}" = "--prepare" ]; then
    set -e
    shared=${DENSEPOSE_TEST_SHARED:-../shared}
    rm -rf .gpu && mkdir -p .gpu/wheels .gpu/shared/golden/cases
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux1_x86_64 -d .gpu/wheels "${WHEELS[@]}"
    cp -r "$shared/golden/images" "$shared/golden/keys" "$shared/golden/overrides" "$shared/golden/make_weights.py" .gpu/shared/golden/
    for name in "${GOLDEN_ARCHITECTURES[@]}"; do
        cp "$shared/golden/cases/${name}__astronaut.npz" .gpu/shared/golden/cases/
    done
    du -sh .gpu
    echo "ready: run(command=\"bash scripts/gpu_check.sh\", carry=[\".gpu\"], timeout_s=540)"
    exit 0
fi

OUT=${OUT:-$PWD/out/gpu_check}
mkdir -p "$OUT"
report="$OUT/gpu_report.md"
started=$(date +%s)
if [ ! -d .gpu/wheels ]; then
    echo "no .gpu/ here: run scripts/gpu_check.sh --prepare first, and carry .gpu" | tee "$report"
    exit 2
fi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/wheels/*.whl \
    > "$OUT/install.log" 2>&1
export PYTHONPATH="$PWD/src:/tmp/site" DENSEPOSE_TEST_SHARED="$PWD/.gpu/shared" PYTHONUNBUFFERED=1

{
    echo "# GPU check"
    echo
    echo "\`scripts/gpu_check.sh\` on $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)."
    echo
    echo '```'
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
    python3 -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'bf16', torch.cuda.is_bf16_supported())" 2>&1
    tail -n 3 "$OUT/install.log"
    echo '```'
} > "$report"

timeout 330 python3 -m pytest -q -m gpu -p no:cacheprovider -o addopts="" tests/test_gpu.py > "$OUT/tests.log" 2>&1
tests_status=$?
{
    echo
    echo "## Tests marked gpu (exit $tests_status)"
    echo
    echo '```'
    grep -E "passed|failed|error|skipped" "$OUT/tests.log" | tail -n 5
    grep -E "^(FAILED|ERROR)" "$OUT/tests.log" | head -n 20
    echo '```'
} >> "$report"

(cd benchmarks && timeout 150 python3 bench_throughput.py --device cuda --images 48 --markdown "$OUT/throughput.md") \
    > "$OUT/throughput.log" 2>&1
bench_status=$?
{
    echo
    echo "## Throughput (benchmarks/bench_throughput.py, exit $bench_status)"
    echo
    if [ -s "$OUT/throughput.md" ]; then cat "$OUT/throughput.md"; else echo '```'; tail -n 20 "$OUT/throughput.log"; echo '```'; fi
} >> "$report"

# ONNX Runtime's CUDA provider on the exported graph, beside the torch paths. It needs
# onnxruntime-gpu, whose wheel (~300 MB) is over the device tool's 64 MiB carry limit: on an image
# with the CPU-only onnxruntime this step reports that in one line.
(cd benchmarks && timeout 120 python3 -c "import onnxruntime; print('onnxruntime', onnxruntime.__version__, onnxruntime.get_available_providers())" \
    && timeout 120 python3 bench_backends.py --device cuda --backends exact fast "onnxruntime fp32" --people 1 5 --repeat 5) \
    > "$OUT/onnxruntime_cuda.log" 2>&1
ort_status=$?
{
    echo
    echo "## ONNX Runtime CUDA provider (benchmarks/bench_backends.py --device cuda, exit $ort_status; images/s = 1 / s per image)"
    echo
    echo '```'
    tail -n 24 "$OUT/onnxruntime_cuda.log"
    echo '```'
    echo
    echo "Whole check: $(( $(date +%s) - started )) s."
} >> "$report"
cat "$report"
[ "$tests_status" -eq 0 ] && [ "$bench_status" -eq 0 ]
