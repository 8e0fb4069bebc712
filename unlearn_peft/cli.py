"""The `unlearn-peft` command: `train`, `eval`, `push` and `demo`.

    unlearn-peft train --config recipes/tofu/uld_forget10.yaml [--key value ...]
    unlearn-peft eval --adapter outputs/tofu/uld_forget10 --forget-split forget10
    unlearn-peft push outputs/tofu/uld_forget10 user/tofu-uld-forget10
    unlearn-peft demo

Every subcommand has `--help`. Errors in the input print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .command_line import OneLineArgumentParser
from .demo import main as demo_main
from .evaluation.command import main as eval_main
from .hub import HubPushError, push_adapter
from .recipe import main as train_main

COMMANDS = {
    "train": "Unlearn with a recipe YAML (`--config`) and `--key value` overrides.",
    "eval": "Evaluate a model or an unlearning adapter on TOFU: JSON, markdown and plots.",
    "push": "Upload an adapter, its sidecar and its model card to the Hub.",
    "demo": "Unlearn European capitals from the embedded SmolLM2-135M on CPU, offline, and show before/after.",
}


def _push_parser(prog: str) -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(prog=prog, description=COMMANDS["push"])
    parser.add_argument("adapter_dir", help="Directory written by save_model / save_pretrained.")
    parser.add_argument("repo_id", help="Target Hub repository, e.g. user/tofu-uld-forget10.")
    parser.add_argument("--eval-results", help="Evaluation JSON (unlearn-peft eval) to put in the card.")
    parser.add_argument("--base-model", help="Hub id of the base model, when the sidecar has a local path.")
    parser.add_argument("--private", action="store_true", help="Create the repository as private.")
    parser.add_argument("--token", help="Hub token (default: the logged-in token or HF_TOKEN).")
    parser.add_argument("--revision", help="Branch to push to.")
    return parser


def _push(argv: Sequence[str], prog: str) -> int:
    options = _push_parser(prog).parse_args(argv)
    url = push_adapter(
        options.adapter_dir,
        options.repo_id,
        evaluation=options.eval_results,
        base_model=options.base_model,
        private=options.private or None,
        token=options.token,
        revision=options.revision,
    )
    print(f"Pushed {options.adapter_dir} to {url}")
    return 0


def _run(command: str, argv: Sequence[str]) -> int:
    prog = f"unlearn-peft {command}"
    if command == "train":
        return train_main(argv, prog=prog)
    if command == "eval":
        return eval_main(argv, prog=prog)
    if command == "push":
        return _push(argv, prog)
    demo_main(list(argv))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="unlearn-peft", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=sorted(COMMANDS), help="; ".join(f"{k}: {v}" for k, v in COMMANDS.items()))
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"unlearn-peft: error: unknown command {command!r}; choose one of {sorted(COMMANDS)}.", file=sys.stderr)
        return 2
    try:
        return _run(command, rest)
    except SystemExit as exit_:  # argparse --help (0) or a usage error (2, already printed)
        return int(exit_.code or 0)
    except (ValueError, TypeError, OSError, HubPushError) as error:
        if os.environ.get("UNLEARN_PEFT_DEBUG"):
            raise
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"unlearn-peft {command}: error: {message} (UNLEARN_PEFT_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 2


def entry_point() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
