#!/usr/bin/env bash
# Prepared GPU run of the ml-1m accuracy rows (README "Accuracy"): DiffuRecSys, SASRec and SASRec at
# learning rate 2e-3 (the tuned SASRec of amazon-beauty), seeds 1-3, the accuracy protocol
# (properties/accuracy.yaml) at max length 100, all nine runs side by side on one GPU with one CPU
# thread each and the device-resident training loader. Each run is stopped after LIMIT seconds
# (default 540, so the whole script fits ten minutes); a stopped run resumes from its last epoch
# when the script is run again, and finished runs are skipped. Usage, from the repository root:
#     bash benchmarks/gpu_ml1m.sh /path/to/datasets [OUT]
# Results: OUT/runs/*.json (one record per finished run), OUT/logs, OUT/tables (default OUT:
# benchmarks/accuracy/ml-1m). The tables are rebuilt at the end from every record there.
set -uo pipefail
DATA=${1:?usage: bash benchmarks/gpu_ml1m.sh /path/to/datasets [OUT]}
OUT=${2:-benchmarks/accuracy/ml-1m}
LIMIT=${LIMIT:-540}
SEEDS=${SEEDS:-1 2 3}
PY=${PYTHON:-python}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p "$OUT/console"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
COMMON=(--datasets=ml-1m "--data_path=$DATA" --config_files=properties/accuracy.yaml --MAX_ITEM_LIST_LENGTH=100
        --train_loader=device --show_progress=False "--out=$OUT")
pids=()
for seed in $SEEDS; do
    timeout "$LIMIT" $PY run_recbole_diffurec.py --models=DiffuRecSys --seeds="$seed" "${COMMON[@]}" \
        > "$OUT/console/DiffuRecSys_seed$seed.txt" 2>&1 & pids+=($!)
    timeout "$LIMIT" $PY run_recbole_diffurec.py --models=SASRec --seeds="$seed" "${COMMON[@]}" \
        > "$OUT/console/SASRec_seed$seed.txt" 2>&1 & pids+=($!)
    timeout "$LIMIT" $PY run_recbole_diffurec.py --models=SASRec --variant=lr2e-3 --learning_rate=0.002 \
        --seeds="$seed" "${COMMON[@]}" > "$OUT/console/SASRec-lr2e-3_seed$seed.txt" 2>&1 & pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
    wait "$pid"
    rc=$?
    # 124: stopped by LIMIT (resumable); anything else but 0 is a failure worth reading
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ]; then status=$rc; fi
done
if ls "$OUT"/runs/*.json > /dev/null 2>&1; then
    $PY run_recbole_diffurec.py --tables="$OUT" --baseline=SASRec || status=$?
    ls "$OUT/runs"
else
    echo "no run finished within LIMIT=$LIMIT s; run the script again to continue them"
fi
exit $status
