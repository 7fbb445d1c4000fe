"""`zoo-run data ...` subcommands."""


def register(subparsers):
    pass
