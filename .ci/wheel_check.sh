#!/usr/bin/env bash
# CI's wheel job: build the wheel, install it into a fresh virtual environment (CPU torch first), and
# run a tiny DiffuRecSys from a directory outside the clone, through RecBole's own run_recbole and
# through the console command.
set -euo pipefail
cd "$(dirname "$0")/.."
CLONE="$(pwd)"
PYTHON="${PYTHON:-python3}"
TORCH="${TORCH:-torch==2.13.0}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

"$PYTHON" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q "$TORCH"
"$WORK/venv/bin/python" -m pip wheel -q --no-deps -w "$WORK/dist" "$CLONE"
"$WORK/venv/bin/python" -m pip install -q "$WORK"/dist/recbole_diffurec-*.whl

mkdir "$WORK/outside" && cd "$WORK/outside"
TINY=(--epochs=1 --hidden_size=16 --n_layers=1 --n_heads=1 --MAX_ITEM_LIST_LENGTH=10 --train_batch_size=512
      --show_progress=False)
"$WORK/venv/bin/python" - <<'PY'
import os

import recbole_diffurec
from recbole.quick_start import run_recbole

assert "site-packages" in recbole_diffurec.__file__, recbole_diffurec.__file__
result = run_recbole(model="DiffuRecSys", dataset="ml-100k", config_dict={
    "epochs": 1, "hidden_size": 16, "n_layers": 1, "n_heads": 1, "MAX_ITEM_LIST_LENGTH": 10,
    "train_batch_size": 512, "show_progress": False, "checkpoint_dir": os.path.join(os.getcwd(), "saved"),
})
ndcg = result["test_result"]["ndcg@10"]
assert 0 < ndcg < 1, result
print(f"run_recbole from the wheel: DiffuRecSys on ml-100k, test NDCG@10 {ndcg:.4f}")
PY
"$WORK/venv/bin/recbole-diffurec" --model=DiffuRecSys --dataset=ml-100k "${TINY[@]}" | tail -4
"$WORK/venv/bin/recbole-diffurec" --model=DiffuRecSys --dataset=ml-100k --config_files=properties/accuracy.yaml \
    "${TINY[@]}" | tail -2
if "$WORK/venv/bin/recbole-diffurec" --model=DiffuRecSys --dataset=ml-100k --hidden_sise=16 2>"$WORK/err"; then
    echo "a misspelled key was accepted" >&2; exit 1
fi
grep -q "hidden_size" "$WORK/err"
echo "wheel check passed"
