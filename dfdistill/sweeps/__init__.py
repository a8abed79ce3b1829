"""Table sweeps: planning (plan.py: exp axes + command line + --add sets -> jobs with deterministic
dirs, finished ones detected by config key), launching (launch.py: local subprocesses one GPU each,
in-process, or any Hydra launcher through the `joblist` sweeper; gpus.py: one device per job),
the max-ratio search of BiLP Tables 1-2 (search.py), `--plan` previews (preview.py; cost and memory model: model.py, passes.py) and
the CLI behind scripts/run_table.py (cli.py). See docs/sweeps.md.
"""
