#!/usr/bin/env bash
# Prepared GPU check of the device-resident training loader (about 5-8 minutes on one H100/H200):
# the loader alone, then whole training epochs of DiffuRecSys and SASRec at the papers' size on
# ml-1m (hidden 128, 4 blocks, 4 heads, max length 100, batch 1024) with RecBole's loader and with
# train_loader: device. Usage, from the repository root:
#     bash benchmarks/gpu_scale.sh /path/to/datasets [OUT]
# Results: OUT/loader_ml-1m_*.json and OUT/epochs_ml-1m.json (default OUT: results/scale/gpu).
set -euo pipefail
DATA=${1:?usage: bash benchmarks/gpu_scale.sh /path/to/datasets [OUT]}
OUT=${2:-results/scale/gpu}
PY=${PYTHON:-python}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
for model in DiffuRecSys SASRec; do
    $PY benchmarks/loader.py --model=$model --dataset=ml-1m --data_path="$DATA" --max_len=100 --batch_size=1024 \
        --device=cuda --epochs=3 --out="$OUT/loader_ml-1m_$model.json"
done
# one full epoch per model and loader (DiffuRecSys's 41-epoch projection beside the paper's Table 2)
$PY benchmarks/benchmark.py --paper --dataset=ml-1m --models=DiffuRecSys,SASRec --epochs=1 --no_eval \
    --device=cuda --loaders=recbole,device --data_path="$DATA" --out="$OUT/epochs_ml-1m.json"
