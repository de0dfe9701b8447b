"""The `podium` commands, one module per noun; each lists its top-level commands and
groups in `COMMANDS`, which `cli.main` adds to the root group."""

import click


class StartGroup(click.Group):
    """A noun whose bare use starts one (`podium automl SPEC.yaml`, `podium serve
    USER/N`): arguments that name none of the group's commands go to its `start`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["start", *args]
        return super().parse_args(ctx, args)
