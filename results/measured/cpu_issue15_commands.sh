#!/usr/bin/env bash
# CPU runs of issue 15 item 6 (profile=cpu, CIFAR-10 JPEG, single-threaded, niced). Resumable: rerun = continue.
set -u
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 PYTHONPATH=$PWD
PY="nice -n 10 /work/main/.venv/bin/python scripts/run_table.py"
# R / M: where the runs and the tables go (defaults inside this checkout)
R=${R:-results/sweeps/cpu_issue15}
M=${M:-results/measured}
COMMON="--profile cpu --no-extra dataset=cifar10_jpeg dataset.root=/work/shared/data/cifar10-jpeg logger=none eval.compare_random=false"
$PY bilp_tab1 --sweep-dir $R/bilp_tab1 --out $M/bilp_tab1_cpu --name bilp_tab1_cpu $COMMON 'method=dc,dm' ipc=1
$PY bilp_tab2 --sweep-dir $R/bilp_tab2 --out $M/bilp_tab2_cpu --name bilp_tab2_cpu $COMMON 'method=dc,dm' ipc=1
$PY bilp_fig2 --sweep-dir $R/bilp_fig2 --out $M/bilp_fig2_cpu_arrows --name bilp_fig2_cpu $COMMON 'method=dc,dm' ipc=1
$PY bilp_fig3 --sweep-dir $R/bilp_fig3 --out $M/bilp_fig3_grid_cpu --name bilp_fig3_cpu $COMMON 'pruning.trials=1,5' 'pruning.epochs=[1],[1-5]'
echo "[cpu runs] done"
