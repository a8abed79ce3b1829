"""dfdistill: dataset distillation and data pruning that compose through Hydra configs."""

__version__ = "0.1.0"
