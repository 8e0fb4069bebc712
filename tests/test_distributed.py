import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = Path(__file__).parent / "scripts" / "train_tiny_uld.py"
FIXTURES = Path(__file__).parent / "fixtures" / "tofu"


def _run(command: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.slow
def test_two_process_accelerate_launch_matches_one_process(tmp_path, smollm2_path):
    """2 processes × batch 2 must give the adapter of 1 process × batch 4 (token counts gathered across ranks)."""
    ddp_dir, single_dir = tmp_path / "ddp", tmp_path / "single"
    _run(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            str(SCRIPT),
            str(smollm2_path),
            str(FIXTURES),
            str(ddp_dir),
            "2",
        ],
        tmp_path,
    )
    _run([sys.executable, str(SCRIPT), str(smollm2_path), str(FIXTURES), str(single_dir), "4"], tmp_path)

    ranks = sorted(json.loads(path.read_text())["world_size"] for path in ddp_dir.glob("rank*.json"))
    assert ranks == [2, 2]
    assert sorted(p.name for p in ddp_dir.glob("adapter_model*.safetensors")) == ["adapter_model.safetensors"]
    ddp, single = load_file(ddp_dir / "adapter_model.safetensors"), load_file(single_dir / "adapter_model.safetensors")
    assert ddp.keys() == single.keys()
    for key in single:
        torch.testing.assert_close(ddp[key], single[key], rtol=1e-4, atol=1e-6)
