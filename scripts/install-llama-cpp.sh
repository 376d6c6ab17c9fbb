#!/usr/bin/env bash
# Install llama-cpp-python built for a portable x86-64 instruction set (AVX2/FMA/F16C).
#
# Why: llama-cpp-python's default source build uses -march=native, which on some
# virtual machines enables Intel AMX kernels the CPU advertises but the hypervisor
# does not let processes use: the first matrix multiply then dies with SIGILL
# ("Illegal instruction", `tilezero`). A portable build avoids it at a small speed cost.
# The wheel is built once (~7 min on 2 cores) and kept in a cache folder of its own
# (pip's wheel cache is keyed by the sdist, not by CMAKE_ARGS, so it could hand back a
# native build).
set -euo pipefail
spec="${LLAMA_CPP_SPEC:-llama-cpp-python>=0.3.7}"
cache="${THERASIM_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/therasim-wheels}"
flags="${LLAMA_CPP_CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON}"
mkdir -p "$cache"
wheel=$(ls -t "$cache"/llama_cpp_python-*.whl 2>/dev/null | head -n1 || true)
if [ -z "$wheel" ]; then
  echo "building llama-cpp-python ($flags) into $cache; about 7 minutes on 2 cores"
  CMAKE_ARGS="$flags" python -m pip wheel -q --no-deps --no-binary llama-cpp-python \
    --no-cache-dir "$spec" -w "$cache"
  wheel=$(ls -t "$cache"/llama_cpp_python-*.whl | head -n1)
fi
python -m pip install -q --force-reinstall --no-deps "$wheel"
# its own runtime dependencies (numpy, jinja2, diskcache, typing-extensions)
python -m pip install -q "$wheel"
