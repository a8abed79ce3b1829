"""How networks train: training loops and schedules, compiled paths, losses, memory budgets,
the runtime (device, seeds, speed switches) and divergence checks.
"""
