# The environment of a Leonardo run. Source it on a login node, from the repository
# root, in the shell that runs Snakemake:
#
#   source profiles/leonardo/env.sh
#
# Jobs inherit it: the SLURM executor submits with --export=ALL, and every node mounts
# the same file systems. It also links the profile where `snakemake --profile leonardo`
# finds it (profiles/link.sh). Export any variable below first to override it.
#
#   PERSONA_EM_MODULES    modules to load (`module av python`); no cuda module: the torch
#                         and vLLM wheels bring their own CUDA libraries
#   PERSONA_EM_VENV       the virtual environment (`make setup` creates .venv)
#   PERSONA_EM_CONDA_ENV  a conda environment to activate instead of the venv
#   PERSONA_EM_CACHE      where Hugging Face, torch, Triton and vLLM keep caches
#   PERSONA_EM_VLLM_PYTHON  the python of the vLLM venv (envs/README.md); default
#                         .venv-vllm/bin/python when that venv exists
#
# HF_HUB_OFFLINE is not set here: rules/cluster.smk sets it inside every job of a rule
# that does not declare `internet=1` (compute nodes have no internet), and leaves it
# unset for the download rules on lrd_all_serial.

_persona_em_fail() {
    echo "profiles/leonardo/env.sh: $*" >&2
    return 1
}

if [ -z "${PERSONA_EM_ACCOUNT:-}" ]; then
    echo "profiles/leonardo/env.sh: PERSONA_EM_ACCOUNT is not set; jobs need it (saldo -b lists your accounts)" >&2
fi

: "${PERSONA_EM_MODULES:=python/3.11.7}"
if command -v module >/dev/null 2>&1; then
    for _m in $PERSONA_EM_MODULES; do
        module load "$_m" || _persona_em_fail "module load $_m failed; set PERSONA_EM_MODULES (module av python)" || return 1
    done
    unset _m
fi

if [ -n "${PERSONA_EM_CONDA_ENV:-}" ]; then
    conda activate "$PERSONA_EM_CONDA_ENV" || _persona_em_fail "conda activate $PERSONA_EM_CONDA_ENV failed" || return 1
else
    : "${PERSONA_EM_VENV:=$PWD/.venv}"
    [ -f "$PERSONA_EM_VENV/bin/activate" ] || _persona_em_fail "no venv at $PERSONA_EM_VENV; run \`make setup\` or set PERSONA_EM_VENV" || return 1
    # shellcheck disable=SC1091
    source "$PERSONA_EM_VENV/bin/activate"
fi

# Caches on the project area ($WORK), not $HOME (50 GB) nor node-local disks.
: "${PERSONA_EM_CACHE:=${WORK:-$HOME}/${USER}/persona-em-cache}"
mkdir -p "$PERSONA_EM_CACHE"
export PERSONA_EM_CACHE
export HF_HOME="${HF_HOME:-$PERSONA_EM_CACHE/huggingface}"
export HF_HUB_DISABLE_TELEMETRY=1
export TORCH_HOME="${TORCH_HOME:-$PERSONA_EM_CACHE/torch}"
export TRITON_CACHE_DIR="${TRITON_CACHE_DIR:-$PERSONA_EM_CACHE/triton}"
export VLLM_CACHE_ROOT="${VLLM_CACHE_ROOT:-$PERSONA_EM_CACHE/vllm}"
export XDG_CACHE_HOME="${XDG_CACHE_HOME:-$PERSONA_EM_CACHE/xdg}"
export PIP_CACHE_DIR="${PIP_CACHE_DIR:-$PERSONA_EM_CACHE/pip}"
export TOKENIZERS_PARALLELISM=false

# vLLM lives in a venv of its own; sampling and generation jobs hand their work to it.
if [ -z "${PERSONA_EM_VLLM_PYTHON:-}" ] && [ -x "$PWD/.venv-vllm/bin/python" ]; then
    export PERSONA_EM_VLLM_PYTHON="$PWD/.venv-vllm/bin/python"
fi
if [ -z "${PERSONA_EM_VLLM_PYTHON:-}" ]; then
    echo "profiles/leonardo/env.sh: no vLLM venv (.venv-vllm, or set PERSONA_EM_VLLM_PYTHON); vllm engine jobs will stop with this message" >&2
fi
unset -f _persona_em_fail

# `snakemake --profile leonardo`: Snakemake looks a bare profile name up in the user's
# Snakemake config directory, not in profiles/. Link this profile there (done once; a
# different profile of that name is left alone, and this script says so and fails).
bash "$(dirname "${BASH_SOURCE[0]:-$0}")/../link.sh" leonardo || return 1
