"""The bodies of modlib's commands: each drives the pipeline (read → plan → execute → publish) for one CLI verb,
so that the pipeline's packages stay free of command-line concerns (pyproject.toml's import contracts)."""
