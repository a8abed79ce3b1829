"""One run, from the resolved config to its results: preflight checks, the distillation loop,
checkpoints, the saved set, finished distillations by key, the pipeline's stages.
"""
