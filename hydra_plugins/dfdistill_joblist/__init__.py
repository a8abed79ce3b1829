"""dfdistill's Hydra sweeper plugin (`hydra/sweeper=joblist`); see joblist_sweeper.py."""
