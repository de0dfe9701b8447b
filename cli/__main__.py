"""`python -m cli`: the same as the `podium` command."""

from cli.main import main

main()
