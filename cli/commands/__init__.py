"""The `podium` commands, one module per noun; each lists its top-level commands and
groups in `COMMANDS`, which `cli.main` adds to the root group."""
