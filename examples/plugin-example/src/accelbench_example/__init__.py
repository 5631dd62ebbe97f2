"""An example accelbench plugin: one workload, ``horner`` (see horner.py and docs/plugins.md)."""
