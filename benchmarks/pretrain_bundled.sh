#!/usr/bin/env bash
# Reproduces the bundled encoder src/ecgadapt/weights/ecg_vit_tiny.safetensors (see its model card).
# These are the commands that made it, on a 2-core CPU (about 45 minutes in all). Needs the optional extra:
#   pip install -e ".[deepfake]"
# Usage: bash benchmarks/pretrain_bundled.sh [WORK_DIR]   (default /tmp/ecgadapt-bundled)
set -euo pipefail
work=${1:-/tmp/ecgadapt-bundled}
shared=${ECGADAPT_SHARED:-../shared}
mkdir -p "$work"
# 1. 50,000 ECGs from the deepfake-ecg generator (8 leads -> 12, 10 s, stored at 100 Hz in mV), seed 0.
python -c "
from ecgadapt.pretrain.corpus import generate_deepfake_corpus
generate_deepfake_corpus('$work/deepfake-50k-s0-100hz', 50000, seed=0, rate=100, chunk_size=256)"
# 2. 20,000 ECGs of ecgadapt's own synthetic generator, seed 7 (the demo's data uses seed 0).
python -c "
from ecgadapt.data.synthetic import write_synthetic_ptbxl
write_synthetic_ptbxl('$work/synthetic-20k-s7', n_records=20000, seed=7, rates=(100,))"
# 3. Masked-ECG pretraining; the real PTB-XL records only measure a held-out loss (never trained on).
ecgadapt pretrain --model ecg_vit_tiny --corpus "$work/deepfake-50k-s0-100hz" --corpus "$work/synthetic-20k-s7" \
  --real-val "$shared/data/ptbxl-500" --cache-dir "$work/cache" --epochs 25 --steps-per-epoch 250 \
  --batch-size 64 --lr 1e-3 --warmup-epochs 2 --seed 0 --num-workers 1 --no-progress --out "$work/pretrain-bundled"
# 4. The model card's figures, and the encoder into the package.
python benchmarks/model_card_figures.py --run "$work/pretrain-bundled" --out src/ecgadapt/weights
cp "$work/pretrain-bundled/encoder.safetensors" src/ecgadapt/weights/ecg_vit_tiny.safetensors
