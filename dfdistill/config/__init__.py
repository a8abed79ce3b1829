"""Config schemas, their ConfigStore registration, and resolution (profile + validation)."""
