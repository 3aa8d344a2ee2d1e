#!/usr/bin/env bash
# Reproduces the default bundled encoder src/ecgadapt/weights/xresnet1d_tiny.safetensors (see its model card).
# These are the commands that made it, on the 2-core development CPU with one thread (about 30 minutes).
# The run directory must be runs/pretrain-cnn: the corpus paths are part of the file's metadata, so the same
# command in the same place writes the same bytes (SHA-256 in the card).
# Usage: bash benchmarks/pretrain_bundled_cnn.sh   (from the repository root; needs ../shared beside it)
set -euo pipefail
# 1. 5,000 synthetic ECGs (seed 7) and the 1,785 real, unlabelled ECGs of ptbxl-unlabelled-1785, weights 1:3;
#    masked-segment reconstruction, 20 epochs of 100 steps, batch 64, seed 0; then the fold-9 probe (selection).
python benchmarks/pretrain_candidates.py --out runs/pretrain-cnn --candidates cnn --deepfake 0 --synthetic 5000 \
  --weights 1 3 --epochs 20 --steps-per-epoch 300 --threads 1
# 2. The model card's figures, and the encoder into the package.
python benchmarks/model_card_figures.py --run runs/pretrain-cnn/cnn --out src/ecgadapt/weights
cp runs/pretrain-cnn/cnn/encoder.safetensors src/ecgadapt/weights/xresnet1d_tiny.safetensors
sha256sum src/ecgadapt/weights/xresnet1d_tiny.safetensors
