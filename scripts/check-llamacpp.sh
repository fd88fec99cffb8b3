#!/usr/bin/env bash
# Does llama.cpp serve the Qwen3 export? Builds llama-cpp-python from its PyPI source (llama.cpp vendored: ~10
# minutes on 2 cores) in a throw-away venv beside the project's, converts the export and one adapter to GGUF
# with llama.cpp's own scripts, and compares logits and greedy tokens with Zephyra (scripts/llamacpp_check.py).
# Not part of the tests (the build is too long); the result is in docs/serving.md.
#
#   scripts/check-llamacpp.sh                          # the quickstart's base and its python adapter
#   BASE=runs/phase2/final ADAPTERS=runs/adapters ADAPTER=python WORK=/tmp/zephyra-llamacpp scripts/check-llamacpp.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${BASE:-runs/phase2/final}
ADAPTERS=${ADAPTERS:-runs/adapters}
ADAPTER=${ADAPTER:-python}
WORK=${WORK:-/tmp/zephyra-llamacpp}
VERSION=0.3.36   # llama-cpp-python, with llama.cpp vendored
PY=.venv/bin/python
[ -d "$BASE" ] || { echo "error: no base at $BASE (run the quickstart, or set BASE=)" >&2; exit 1; }
[ -d "$ADAPTERS/$ADAPTER" ] || { echo "error: no adapter $ADAPTERS/$ADAPTER (set ADAPTERS= / ADAPTER=)" >&2; exit 1; }
mkdir -p "$WORK"
SRC="$WORK/llama_cpp_python-$VERSION"
if [ ! -d "$SRC" ]; then
  .venv/bin/pip download --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$WORK"
  tar -xzf "$WORK/llama_cpp_python-$VERSION.tar.gz" -C "$WORK"
fi
VENV="$WORK/venv"
if ! "$VENV/bin/python" -c "import llama_cpp" 2>/dev/null; then
  python3.11 -m venv "$VENV"
  # the project's packages (torch, transformers, numpy) are seen, not installed again
  "$PY" -c "import site; print(site.getsitepackages()[0])" > "$VENV/lib/python3.11/site-packages/zz_project.pth"
  echo "building llama-cpp-python $VERSION (about 10 minutes on 2 cores) ..." >&2
  CMAKE_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF" CMAKE_BUILD_PARALLEL_LEVEL=2 \
    "$VENV/bin/pip" install -q "$SRC"
fi
LLAMA="$SRC/vendor/llama.cpp"
EXPORT="$WORK/export"
rm -rf "$EXPORT"
.venv/bin/zephyra export --format qwen3 "$EXPORT" --base "$BASE" --adapters "$ADAPTERS"
export PYTHONPATH="$PWD/src"
"$VENV/bin/python" scripts/llamacpp_check.py convert "$LLAMA" convert_hf_to_gguf.py "$EXPORT" \
  --outfile "$EXPORT/model-f32.gguf" --outtype f32
"$VENV/bin/python" scripts/llamacpp_check.py convert "$LLAMA" convert_lora_to_gguf.py --base "$EXPORT" \
  --outfile "$EXPORT/$ADAPTER-lora.gguf" --outtype f32 "$EXPORT/adapters/$ADAPTER"
"$VENV/bin/python" scripts/llamacpp_check.py compare "$BASE" "$EXPORT" "$ADAPTER" "$ADAPTERS/$ADAPTER"
