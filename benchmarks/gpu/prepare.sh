#!/usr/bin/env bash
# Run HERE (a machine with PyPI and ../shared/data), before a GPU session's device calls.
# Fills git-ignored folders of the checkout that the device calls carry (docs/embed.md, "GPU"):
#   .whl/        wheels the device image lacks: open_clip_torch, ftfy, wcwidth, nvImageCodec + nvJPEG (CUDA 13)
#   .gpu-data/   the real photos (coco_mini_val) and captions: ../shared does not travel
#   .ortgpu/pN/  onnxruntime-gpu (CUDA 13 build, 256 MB) cut into parts under the 64 MiB a call may carry
# Usage: benchmarks/gpu/prepare.sh [PYTHON]      (about 1 minute; ~330 MB on disk)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${1:-${PYTHON:-python3}}
SHARED=${SHARED:-../shared/data}
# .gitignore lists the three folders: they travel only when a call carries them.
for d in .whl .gpu-data .ortgpu; do git check-ignore -q "$d" || { echo "$d must be in .gitignore" >&2; exit 1; }; done

# The device runs Python 3.12 on x86-64 with CUDA 13 (see /work/.library/device/KINDS.md).
PLAT=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
      --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
rm -rf .whl .ortgpu && mkdir -p .whl .ortgpu
"$PY" -m pip download -q --no-deps "${PLAT[@]}" -d .whl \
  open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4 nvidia-nvimgcodec-cu13==0.9.0.20 nvidia-nvjpeg==13.3.2.43
tmp=$(mktemp -d)
"$PY" -m pip download -q --no-deps "${PLAT[@]}" -d "$tmp" onnxruntime-gpu==1.31.1
whl=$(ls "$tmp"/onnxruntime_gpu-*.whl)
name=$(basename "$whl")
(cd "$tmp" && split -b 50M -d -a 1 "$name" part. && sha256sum "$name" > SHA256)
i=1
for part in "$tmp"/part.*; do
  mkdir -p ".ortgpu/p$i"
  mv "$part" ".ortgpu/p$i/"
  cp "$tmp/SHA256" ".ortgpu/p$i/SHA256"
  i=$((i + 1))
done
rm -rf "$tmp"

rm -rf .gpu-data && mkdir -p .gpu-data/images
cp "$SHARED"/images/coco_mini_val/*.jpg .gpu-data/images/
"$PY" - "$SHARED" <<'PYEOF'
import sys
from pathlib import Path
src = Path(sys.argv[1]) / "captions" / "cc3m_val.tsv"
caps = [l.split("\t")[0] for l in src.read_text(encoding="utf-8").split("\n") if l.strip()]
Path(".gpu-data/captions.txt").write_text("\n".join(c.replace("\n", " ") for c in caps) + "\n", encoding="utf-8")
print(f"{len(caps)} captions")
PYEOF
du -sh .whl .gpu-data .ortgpu/p*
echo "ready: $(ls -d .ortgpu/p* | wc -l) onnxruntime-gpu parts; see docs/embed.md for the device calls"
