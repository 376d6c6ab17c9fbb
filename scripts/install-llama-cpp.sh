#!/usr/bin/env bash
# Install llama-cpp-python built for a portable x86-64 instruction set (AVX2/FMA/F16C).
#
# Why: llama-cpp-python's default source build uses -march=native, which on some
# virtual machines enables Intel AMX kernels the CPU advertises but the hypervisor
# does not let processes use: the first matrix multiply then dies with SIGILL
# ("Illegal instruction", `tilezero`). A portable build avoids it at a small speed cost.
# The wheel is built once and kept in a cache folder of its own (pip's wheel cache is
# keyed by the sdist, not by CMAKE_ARGS, so it could hand back a native build).
#
# Only what the Python package loads is compiled: libllama and the ggml libraries.
# Left out: the multimodal library (LLAVA_BUILD=OFF: llama_cpp.mtmd_cpp is imported
# only by the llava/mtmd chat handlers, which therasim never uses) and llama.cpp's
# `common` helpers (arg parsing, chat parsers, downloads: used by llama.cpp's own
# tools, not by the bindings; llama-cpp-python forces it ON, a project include turns
# it off again). That is 74 compile units instead of 178 (the heavy C++ ones, chat
# parsers and JSON templates, are the ones left out): about 5 CPU-minutes, a quarter
# of the full build. If that build fails (a newer llama-cpp-python laid out
# differently), the full build runs.
# Usage: scripts/install-llama-cpp.sh [--build-only]
set -euo pipefail
spec="${LLAMA_CPP_SPEC:-llama-cpp-python>=0.3.7}"
cache="${THERASIM_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/therasim-wheels}"
flags="${LLAMA_CPP_CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON}"
mkdir -p "$cache"
wheel=$(ls -t "$cache"/llama_cpp_python-*.whl 2>/dev/null | head -n1 || true)
if [ -z "$wheel" ]; then
  lean="$(mktemp -d)"
  trap 'rm -rf "$lean"' EXIT
  echo 'set(LLAMA_BUILD_COMMON OFF)  # shadows the FORCEd cache entry in this directory scope' > "$lean/no-common.cmake"
  lean_flags="$flags -DLLAVA_BUILD=OFF -DCMAKE_PROJECT_llama.cpp_INCLUDE=$lean/no-common.cmake"
  export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
  echo "building llama-cpp-python ($lean_flags) into $cache; about 3 minutes on 2 idle cores"
  if ! CMAKE_ARGS="$lean_flags" python -m pip wheel -q --no-deps --no-binary llama-cpp-python \
    --no-cache-dir "$spec" -w "$cache"; then
    echo "the library-only build failed; building everything ($flags), about 7 minutes on 2 cores"
    CMAKE_ARGS="$flags" python -m pip wheel -q --no-deps --no-binary llama-cpp-python \
      --no-cache-dir "$spec" -w "$cache"
  fi
  wheel=$(ls -t "$cache"/llama_cpp_python-*.whl | head -n1)
fi
echo "llama-cpp-python wheel: $wheel"
# --build-only: fill the cache and stop (CI builds while it installs other things)
if [ "${1:-}" = "--build-only" ]; then exit 0; fi
python -m pip install -q --force-reinstall --no-deps "$wheel"
# its own runtime dependencies (numpy, jinja2, diskcache, typing-extensions)
python -m pip install -q "$wheel"
# the shared libraries it needs are all there (a lean build missing one fails here, not mid-test)
python - <<'EOF'
import llama_cpp
llama_cpp.llama_backend_init()
print("llama-cpp-python", llama_cpp.__version__, "loads")
EOF
