# dfdistill: one command per paper table. `make help` lists the targets.
#   make table-bilp-4 PROFILE=cpu DATASET=cifar10_jpeg        # sweep (only missing jobs) + table
#   make table-bilp-4 PROFILE=full PLAN=1                      # every job, its settings, the cost; runs nothing
#   make table-bilp-1 PROFILE=smoke DATASET=digits EXTRA="method=dc,dm ipc=1"
# Variables: PROFILE (full|cpu|smoke), DATASET (replaces the dataset axis), EXTRA (more Hydra
# overrides; a sweep value like ipc=1,10 replaces that axis), PLAN=1 (plan only), SWEEP_DIR (root;
# default results/sweeps/<exp>/<profile>), OUT (table folder, default the sweep dir), LAUNCHER
# (local | inprocess | joblib | submitit_local | submitit_slurm), JOBS (jobs at once, one GPU each:
# auto = one per visible GPU, 1 without; or N), LOGGER (none | wandb). What each table runs beyond
# its exp's grid (extra rows, ragged IPC columns, the max-ratio search, reuse of other tables' runs)
# is in dfdistill/sweeps/jobsets.py.

PYTHON   ?= python
PROFILE  ?= cpu
DATASET  ?=
EXTRA    ?=
LAUNCHER ?= local
JOBS     ?= auto
LOGGER   ?= none
OUT      ?=
SWEEP_DIR ?=
PAPER_DATASET ?=
PLAN     ?=

RUN_TABLE = $(PYTHON) scripts/run_table.py --profile $(PROFILE) --launcher $(LAUNCHER) --jobs $(JOBS) \
	$(if $(SWEEP_DIR),--sweep-dir $(SWEEP_DIR)/$(1),) $(if $(OUT),--out $(OUT),) $(if $(PLAN),--plan,) \
	$(if $(PAPER_DATASET),--paper-dataset $(PAPER_DATASET),) $(2) $(1) logger=$(LOGGER) \
	$(if $(DATASET),dataset=$(DATASET),) $(EXTRA)
# A figure drawn from the jobs of an exp's sweep (scripts/make_figure.py <kind> --exp <exp>): the same
# planning and job dirs as RUN_TABLE; skipped with PLAN=1.
FIGURE = $(if $(PLAN),,$(PYTHON) scripts/make_figure.py $(1) --exp $(2) --profile $(PROFILE) \
	$(if $(SWEEP_DIR),--sweep-dir $(SWEEP_DIR)/$(2),) $(if $(OUT),--out $(OUT),) \
	$(if $(DATASET),dataset=$(DATASET),) $(EXTRA))

.PHONY: help test test-slow quickstart tables figures results-cpu clean-sweeps bench bench-methods \
	table-bilp-1 table-bilp-2 table-bilp-3 table-bilp-4 table-bilp-5 table-bilp-6 table-bilp-7 \
	fig-bilp-2 fig-bilp-3 fig-bilp-4 fig-edd table-dfcolearn-1 table-dfcolearn-2 table-edd-tinyimagenet

help: ## list targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  %-24s %s\n", $$1, $$2}'
	@echo "  vars: PROFILE=full|cpu|smoke DATASET=... EXTRA='k=v ...' PLAN=1 LAUNCHER=local|joblib|submitit_slurm JOBS=auto|N SWEEP_DIR=... OUT=..."

test: ## fast unit tests (excludes @slow)
	$(PYTHON) -m pytest -q

test-slow: ## the slow pipeline / sweep tests
	$(PYTHON) -m pytest -q -m slow

# the plain command (a value equal to the default is left out, logger is not in the run dir's name), so
# `make quickstart PROFILE=smoke` and `python run.py profile=smoke` are one job in one run dir
quickstart: ## the default job: DM, IPC 10, digits (PROFILE=smoke for seconds)
	$(PYTHON) run.py $(if $(filter-out cpu,$(PROFILE)),profile=$(PROFILE),) logger=$(LOGGER) $(if $(DATASET),dataset=$(DATASET),) $(EXTRA)

table-bilp-1: ## BiLP Table 1: max pruning ratio, random selection (search, 5 removal trials)
	$(call RUN_TABLE,bilp_tab1)
table-bilp-2: ## BiLP Table 2: max pruning ratio, empirical-loss selection (search, 5 removal trials)
	$(call RUN_TABLE,bilp_tab2)
table-bilp-3: ## BiLP Table 3: best accuracy with loss pruning (reuses Table 2's runs)
	$(call RUN_TABLE,bilp_tab3)
table-bilp-4: ## BiLP Table 4: baselines, BiLP+DC/IDC, BiLP+IDC (x3), full dataset
	$(call RUN_TABLE,bilp_tab4)
table-bilp-5: ## BiLP Table 5: pruning-criteria ablation (IDC)
	$(call RUN_TABLE,bilp_tab5)
table-bilp-6: ## BiLP Table 6: s/iter of ITE variants + speed-up vs unpruned (IDC)
	$(call RUN_TABLE,bilp_tab6)
table-bilp-7: ## BiLP Table 7: ImageNet-1K, full data vs BiLP, random real, training time
	$(call RUN_TABLE,bilp_tab7)
fig-bilp-2: ## BiLP Fig. 2: max ratio random -> loss (reuses Tables 1-2's runs)
	$(call RUN_TABLE,bilp_fig2)
fig-bilp-3: ## BiLP Fig. 3: stratified distillation, trials x epochs grid
	$(call RUN_TABLE,bilp_fig3)
fig-bilp-4: ## BiLP Fig. 4: loss scores per dataset (stage=scores), then the diversity per stratum + figure
	$(call RUN_TABLE,bilp_fig4,--no-table)
	$(call FIGURE,diversity,bilp_fig4)
fig-edd: ## EDD Figs. 1-2: an EDD and an IDC run, then update-signal cosine similarity + t-SNE
	$(call RUN_TABLE,edd_figs)
	$(call FIGURE,edd,edd_figs)
table-dfcolearn-1: ## DF-CoLearn Table 1: accuracy vs baselines
	$(call RUN_TABLE,dfcolearn_tab1)
table-dfcolearn-2: ## DF-CoLearn Table 2: component ablation
	$(call RUN_TABLE,dfcolearn_tab2)
table-edd-tinyimagenet: ## EDD: Tiny-ImageNet IPC 50 claim (IDC base)
	$(call RUN_TABLE,edd_tinyimagenet)

figures: fig-bilp-2 fig-bilp-3 fig-bilp-4 fig-edd ## every figure
tables: table-bilp-1 table-bilp-2 table-bilp-3 table-bilp-4 table-bilp-5 table-bilp-6 table-bilp-7 table-dfcolearn-1 table-dfcolearn-2 table-edd-tinyimagenet figures ## every table and figure (long: use PROFILE=full on a GPU)

results-cpu: ## regenerate a committed table under results/measured (TABLE=bilp_tab1_cpu | all; CHECK=1: launch nothing, must equal the committed bytes)
	$(PYTHON) scripts/results.py $(or $(TABLE),--list) $(if $(CHECK),--check,)

clean-sweeps: ## delete results/sweeps (all sweep outputs)
	rm -rf results/sweeps

bench: ## speed harness: fast vs reference formulation (METHOD=dm IPC=10 DATASET=cifar10_jpeg)
	$(PYTHON) scripts/bench.py --baseline -W 1 -M 2 dataset=$(or $(DATASET),cifar10_jpeg) method=$(or $(METHOD),dm) ipc=$(or $(IPC),10) $(EXTRA)

bench-methods: ## issue-2 table: core methods x IPC 1/10 on CIFAR-10 JPEG, profile=cpu
	$(PYTHON) scripts/bench_methods.py
