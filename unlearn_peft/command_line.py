"""Argument parsing shared by every `unlearn-peft` subcommand: bad input is reported as one line."""

from __future__ import annotations

import argparse
from typing import NoReturn


class CommandLineError(ValueError):
    """Bad command-line or recipe input; `unlearn-peft` prints its message as one line and exits with status 2."""


class OneLineErrors:
    """Mixin for `argparse.ArgumentParser` subclasses: `error` raises [`CommandLineError`] instead of printing the
    usage and exiting; `--help` is unchanged."""

    def error(self, message: str) -> NoReturn:
        raise CommandLineError(f"{message} (see --help)")


class OneLineArgumentParser(OneLineErrors, argparse.ArgumentParser):
    """An `ArgumentParser` that reports bad input as one line."""
