"""`zoo-run predict`, `zoo-run export`, `zoo-run import-weights`."""


def register(subparsers):
    """Adds the deployment subcommands (none yet)."""
