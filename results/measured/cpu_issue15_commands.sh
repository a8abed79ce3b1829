#!/usr/bin/env bash
# CPU runs of issue 15 item 6 (profile=cpu, CIFAR-10 JPEG, single-threaded, niced). Resumable: rerun = continue.
# Budget choices for one 2-core session (stated in the tables' notes): the max-ratio searches run
# 3 removal trials per ratio (the paper and the product default: 5) and bisect over a coarser ladder (LADDER) instead of
# every ratio BiLP reports; Fig. 2 reuses the runs of Tables 1-2 (same configs); Fig. 3 runs the
# reduced grid trials x epochs = {1,5} x {[1]} plus 1 x {[1-5]}, over all 10 strata (5 trials x 5 epochs
# of scoring alone would take ~35 min on this CPU).
set -u
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 PYTHONPATH=$PWD
PY="nice -n 10 ${PYTHON:-/work/main/.venv/bin/python} scripts/run_table.py"
# R / M: where the runs and the tables go (defaults inside this checkout)
R=${R:-results/sweeps/cpu_issue15}
M=${M:-results/measured}
LADDER=${LADDER:-0.3,0.5,0.7,0.8,0.9,0.95,0.97,0.99,0.995}
COMMON="--profile cpu --no-extra dataset=cifar10_jpeg dataset.root=/work/shared/data/cifar10-jpeg logger=none eval.compare_random=false"
SEARCH="--ladder $LADDER --trials ${TRIALS:-3}"
$PY bilp_tab1 --sweep-dir $R/bilp_tab1 --out $M/bilp_tab1_cpu --name bilp_tab1_cpu $SEARCH $COMMON 'method=dc,dm' ipc=1
$PY bilp_tab2 --sweep-dir $R/bilp_tab2 --out $M/bilp_tab2_cpu --name bilp_tab2_cpu $SEARCH $COMMON 'method=dc,dm' ipc=1
$PY bilp_fig2 --sweep-dir $R/bilp_fig2 --out $M/bilp_fig2_cpu_arrows --name bilp_fig2_cpu $SEARCH --reuse $R/bilp_tab1 --reuse $R/bilp_tab2 $COMMON 'method=dc,dm' ipc=1
$PY bilp_fig3 --sweep-dir $R/bilp_fig3 --out $M/bilp_fig3_grid_cpu --name bilp_fig3_cpu $COMMON 'pruning.trials=1,5' 'pruning.epochs=[1]' --add 'pruning.trials=1 pruning.epochs=[1-5]'
echo "[cpu runs] done"
