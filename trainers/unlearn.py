"""Unlearn with a recipe: `accelerate launch [--config_file recipes/accelerate/<setup>.yaml] trainers/unlearn.py
--config recipes/<recipe>.yaml [--key value ...]`.

Any recipe key can be overridden on the command line (`--learning_rate 5e-4`, `--output_dir runs/x`); see
`python trainers/unlearn.py --help` for every key. The adapter (PEFT files + `unlearn_sidecar.json`) is written to
`output_dir`, and pushed to the Hub with its model card when `push_to_hub: true`.
"""

import sys

from unlearn_peft.recipe import main

if __name__ == "__main__":
    sys.exit(main(prog="trainers/unlearn.py"))
