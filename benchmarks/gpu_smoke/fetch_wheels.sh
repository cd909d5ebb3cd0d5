#!/usr/bin/env bash
# Downloads (on this machine, which reaches PyPI) the wheels the GPU smoke run needs and
# the GPU machine lacks: Snakemake and its pure-Python dependencies, trl and datasets,
# transformers at the tested version (the engine's static-cache GPU path needs >= 5.23;
# the machine has 5.17), polars, and openai (the judge job imports its client). Versions are
# those of the development venv the workflow is tested with; Python 3.12, x86-64 (the GPU
# machine's). Not fetched: what the machine already has (torch 2.11, peft, accelerate,
# numpy, pandas, pyarrow, huggingface-hub, tokenizers, safetensors, pyyaml, requests,
# jinja2, psutil, ...; /work/.library/device/KINDS.md lists them), the SLURM plugin, the
# analysis packages (the smoke run stops after the judge), easy-dataset-share (archives
# only) and pulp (15.6 MiB; only Snakemake's ILP scheduler imports it: run.sh uses the
# greedy one). polars: 1.20.0, the oldest the environments allow (31 MiB); polars 2.1, the
# tested version, is 52 MiB with its runtime and would not fit one 64 MiB carry.
#
#   bash benchmarks/gpu_smoke/fetch_wheels.sh [.device/gpu_smoke/wheels]
set -euo pipefail
DEST=${1:-.device/gpu_smoke/wheels}
PIP=${PIP:-/work/main/.venv/bin/pip}
mkdir -p "$DEST"

WHEELS=(
    snakemake==9.27.1
    snakemake-interface-common==1.23.0
    snakemake-interface-executor-plugins==9.4.0
    snakemake-interface-logger-plugins==2.1.0
    snakemake-interface-report-plugins==1.3.0
    snakemake-interface-scheduler-plugins==2.0.2
    snakemake-interface-storage-plugins==4.4.1
    argparse-dataclass==2.0.0 conda-inject==1.3.2 configargparse==1.9.0
    docutils==0.22.4 dpath==2.2.0 fastjsonschema==2.22.3 gitdb==4.0.12 gitpython==3.2.1
    humanfriendly==10.0 immutables==0.21 jsonschema==4.26.0 jsonschema-specifications==2025.9.1
    jupyter-core==5.9.1 nbformat==5.11.1 platformdirs==4.14.9 referencing==0.37.0
    rpds-py==2026.9.1 smart-open==7.7.1 smmap==5.0.3 tenacity==9.2.1 throttler==1.2.3
    traitlets==5.16.1 yte==1.9.4 sqlalchemy==2.0.58 sqlmodel==0.0.37 greenlet==3.5.6
    trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
    transformers==5.24.0
    polars==${POLARS_VERSION:-1.20.0}
    openai==3.57.0 httpx2==2.16.2 httpcore2==2.16.2 jiter==0.19.0 pydantic==2.14.4
    pydantic-core==2.50.5 typing-inspection==0.4.5 annotated-types==0.8.0 sniffio==1.3.1
)
"$PIP" download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d "$DEST" "${WHEELS[@]}" 2> >(grep -v "is ignored: it is neither a file" >&2)
# Published as a source archive only: built here into a pure-Python wheel.
"$PIP" wheel --quiet --no-deps -w "$DEST" connection-pool==0.0.3
ls -l "$DEST" | awk 'NR > 1 {printf "%8.1f MiB  %s\n", $5 / 1048576, $9}' | sort -n
du -sm "$DEST" | awk '{print "total:", $1, "MiB (a carry holds 64 MiB with the working tree)"}'
