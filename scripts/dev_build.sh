#!/usr/bin/env bash
# Builds the C++ extension in place (python/fastcurate/_core*.so) for a fast edit-build-test loop:
#   scripts/dev_build.sh [PYTHON]   then   PYTHONPATH=python PYTHON -m pytest
# The wheel build (pip install .) is what users and CI get; this is only for development.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-${PYTHON:-python3}}
BIN=$(dirname "$(command -v "$PY")")
export PATH="$BIN:$PATH"
if [ ! -f build/dev/build.ninja ]; then
  cmake -S . -B build/dev -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -Dpybind11_DIR="$("$PY" -c 'import pybind11; print(pybind11.get_cmake_dir())')" \
    -DPython_EXECUTABLE="$(command -v "$PY")" >/dev/null
fi
cmake --build build/dev
so=$(ls build/dev/_core*.so)
# a new inode (copy, then rename): a process that has the old module loaded keeps a valid mapping
cp -f "$so" "python/fastcurate/.$(basename "$so").tmp"
mv -f "python/fastcurate/.$(basename "$so").tmp" "python/fastcurate/$(basename "$so")"
