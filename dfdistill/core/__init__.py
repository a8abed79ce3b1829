"""Foundations that know nothing of the pipeline: errors, logging, atomic artifacts and config
hashing, the name registries, run-directory names and locks.
"""
