#!/usr/bin/env bash
# Prepared GPU runs of accuracy rows that do not fit a 2-core CPU (protocol: docs/results/amazon-beauty.md):
# DiffuRecSys, SASRec and the tuned SASRec of amazon-beauty (learning rate 2e-3, x0.1 after
# epoch 20), seeds 1-3, the accuracy protocol (properties/accuracy.yaml), all nine runs side by side on
# one GPU with one CPU thread each and the device-resident training loader. PRESET picks the rows:
#     ml-1m              ml-1m at max length 100, hidden 64, 2 blocks (OUT: results/ml-1m-gpu)
#     beauty-paper-size  amazon-beauty at the papers' size: hidden 128, 4 blocks, 4 heads, SASRec's
#                        feed-forward 512 (4H); labels end in -h128l4 (OUT: results/amazon-beauty-h128l4-gpu)
# Each run is stopped after LIMIT seconds (default 540, so one call fits ten minutes); a stopped run
# resumes from its last epoch when the script is run again, and finished runs are skipped. Usage, from
# the repository root:
#     bash benchmarks/gpu_accuracy.sh PRESET /path/to/datasets [OUT]
# Results: OUT/runs/*.json (one record per finished run), OUT/logs, OUT/tables (rebuilt at the end
# from every record there), OUT/console (each run's console output).
set -uo pipefail
USAGE="usage: bash benchmarks/gpu_accuracy.sh ml-1m|beauty-paper-size /path/to/datasets [OUT]"
PRESET=${1:?$USAGE}
DATA=${2:?$USAGE}
LIMIT=${LIMIT:-540}
SEEDS=${SEEDS:-1 2 3}
PY=${PYTHON:-python}
case "$PRESET" in
    ml-1m)
        OUT=${3:-results/ml-1m-gpu}
        DATASET=ml-1m; SIZE=(--MAX_ITEM_LIST_LENGTH=100); SASREC_SIZE=(); TAG="" ;;
    beauty-paper-size)
        OUT=${3:-results/amazon-beauty-h128l4-gpu}
        DATASET=amazon-beauty; SIZE=(--hidden_size=128 --n_layers=4 --n_heads=4); SASREC_SIZE=(--inner_size=512)
        TAG="-h128l4" ;;
    *) echo "unknown PRESET '$PRESET'; $USAGE" >&2; exit 2 ;;
esac
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p "$OUT/console"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
COMMON=("--datasets=$DATASET" "--data_path=$DATA" --config_files=properties/accuracy.yaml "${SIZE[@]}"
        --train_loader=device --show_progress=False "--out=$OUT")
# one run in the background: LABEL SEED ARGS...
launch() {
    local label=$1 seed=$2; shift 2
    timeout "$LIMIT" $PY run_recbole_diffurec.py --seeds="$seed" "${COMMON[@]}" "$@" \
        > "$OUT/console/${label}_seed$seed.txt" 2>&1 &
    pids+=($!)
}
# the size's label (-h128l4) as a variant of the plain rows; none at the protocol's size
VARIANT=(${TAG:+"--variant=${TAG#-}"})
pids=()
for seed in $SEEDS; do
    launch "DiffuRecSys$TAG" "$seed" --models=DiffuRecSys "${VARIANT[@]}"
    launch "SASRec$TAG" "$seed" --models=SASRec "${VARIANT[@]}" "${SASREC_SIZE[@]}"
    launch "SASRec-lr2e-3-step20$TAG" "$seed" --models=SASRec --variant="lr2e-3-step20$TAG" \
        --learning_rate=0.002 --lr_step_size=20 "${SASREC_SIZE[@]}"
done
status=0
for pid in "${pids[@]}"; do
    wait "$pid"
    rc=$?
    # 124: stopped by LIMIT (resumable); anything else but 0 is a failure worth reading
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ]; then status=$rc; fi
done
if ls "$OUT"/runs/*.json > /dev/null 2>&1; then
    $PY run_recbole_diffurec.py --tables="$OUT" --baseline="SASRec$TAG" || status=$?
    ls "$OUT/runs"
else
    echo "no run finished within LIMIT=$LIMIT s; run the script again to continue them"
fi
exit $status
