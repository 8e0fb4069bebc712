"""Evaluate a model or an unlearning adapter on TOFU: `python trainers/evaluate.py --adapter <dir or repo> ...`.

The same as `unlearn-peft eval`; `--help` lists the options. Writes the per-question JSON, `summary.md` and plots.
"""

import sys

from unlearn_peft.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
