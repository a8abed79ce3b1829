"""What a command reaches first: the command line around run.py, the check of a `-m` sweep
before it starts, the Hydra callback that builds a sweep's table.
"""
