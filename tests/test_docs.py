"""The documentation site: it builds in strict mode, and every code block of the quick tour and the how-to guides runs.

Each page's blocks run in order, as a reader would paste them: Python blocks in one namespace per page, bash
blocks in a shell, both in a scratch directory that links the repository's `recipes/`, `trainers/` and `tests/`
(the how-tos read the TOFU fixtures from there). Hub calls go to the loopback Hub of `tests/hub_server.py`.
A block may be left out only with an HTML comment `<!-- not executed: why -->` right above it, and the one allowed
case is the quick tour's `make install`, which CI itself runs before the tests.

GPU recipes cannot run on this CPU machine: a bash block that starts a recipe (`accelerate launch ... --config
<recipe>` or `unlearn-peft train --config <recipe>`) runs as written plus the overrides that `test_recipes.py` uses
for every recipe (the tiny model, the TOFU fixtures, one step, CPU), appended as further `--key value` pairs, which
recipes accept. The command line, the recipe file and the script are exercised; the hardware is not.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from unlearn_peft.embedded import SMOLLM2_HUB_ID, smollm2_checkpoint
from unlearn_peft.methods import METHODS

from .test_recipes import stand_in_overrides, tiny_model_dir  # noqa: F401  (tiny_model_dir is a fixture)

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
EXECUTED_PAGES = ["quicktour.md", *sorted(p.relative_to(DOCS).as_posix() for p in (DOCS / "how-to").glob("*.md"))]
BLOCK = re.compile(
    r"(?:<!-- not executed: (?P<reason>[^>]+) -->\n)?^```(?P<language>[\w-]*)[^\n]*\n(?P<code>.*?)^```",
    re.DOTALL | re.MULTILINE,
)
ALLOWED_EXEMPTIONS = {("quicktour.md", "make install")}
HUB_STAND_INS = ["open-unlearning/tofu_Llama-2-7b-chat-hf_retain99"]
# Pages that load a published adapter "anywhere else": its base is the embedded SmolLM2's Hub id, which the loopback
# Hub then serves from the embedded checkpoint.
PAGES_LOADING_SMOLLM2_FROM_THE_HUB = {"quicktour.md", "how-to/publish.md"}
RECIPE_ARGUMENT = re.compile(r"--config\s+(?P<recipe>recipes/\S+\.yaml)")


def code_blocks(page: str) -> list[tuple[str, str, str | None]]:
    """(language, code, reason it is not executed or None) for every fenced block of `docs/<page>`."""
    text = (DOCS / page).read_text(encoding="utf-8")
    return [(m["language"], m["code"], m["reason"]) for m in BLOCK.finditer(text)]


def test_every_executed_page_has_code_and_only_the_allowed_exemption():
    exemptions = set()
    for page in EXECUTED_PAGES:
        blocks = code_blocks(page)
        assert blocks, f"docs/{page} has no code block"
        for language, code, reason in blocks:
            if reason is not None:
                exemptions.add((page, code.strip()))
            else:
                assert language in ("python", "bash"), f"docs/{page}: a {language!r} block cannot be executed"
    assert exemptions == ALLOWED_EXEMPTIONS


def test_readme_method_example_is_the_one_the_add_method_page_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Adding a method") :]
    readme_code = next(m["code"] for m in BLOCK.finditer(section) if m["language"] == "python")
    assert "@register_method" in readme_code
    assert readme_code in [code for language, code, _ in code_blocks("how-to/add-method.md") if language == "python"]


def test_docs_build_in_strict_mode(tmp_path):
    """`make docs`: mkdocs with mkdocstrings, `--strict` (a broken link, reference or docstring fails)."""
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    api = (tmp_path / "site" / "reference" / "index.html").read_text(encoding="utf-8")
    for anchor in (
        "unlearn_peft.UnlearnConfig",
        "unlearn_peft.UnlearnTrainer",
        "unlearn_peft.ULDModel.from_pretrained",
        "unlearn_peft.hub.push_adapter",
        "unlearn_peft.evaluation.evaluate_tofu",
        "unlearn_peft.methods.register_method",
        "unlearn_peft.losses.npo_loss",
    ):
        assert f'id="{anchor}"' in api, f"the API reference has no entry for {anchor}"


@pytest.mark.slow
@pytest.mark.parametrize("page", EXECUTED_PAGES)
def test_page_code_blocks_run(page, fake_hub, tiny_model_dir, tmp_path, monkeypatch):  # noqa: F811
    workdir = tmp_path / "reader"
    workdir.mkdir()
    for name in ("recipes", "trainers", "tests"):
        (workdir / name).symlink_to(ROOT / name)
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("HF_TOKEN", fake_hub.token)
    for repo_id in HUB_STAND_INS:  # models the pages name, served by the loopback Hub as the tiny model
        fake_hub.api().create_repo(repo_id, exist_ok=True)
        fake_hub.api().upload_folder(repo_id=repo_id, folder_path=tiny_model_dir)
    if page in PAGES_LOADING_SMOLLM2_FROM_THE_HUB:
        fake_hub.create_repo(SMOLLM2_HUB_ID)
        files = {
            p.name: p.read_bytes()
            for p in Path(smollm2_checkpoint()).iterdir()
            if p.is_file() and p.name != "embedded_source.json"
        }
        fake_hub.add_commit(SMOLLM2_HUB_ID, files)
    registered = dict(METHODS)
    try:
        run_blocks(page, workdir, tiny_model_dir)
    finally:  # a page that registers a method must not leave it to later tests
        METHODS.clear()
        METHODS.update(registered)


def run_blocks(page: str, workdir: Path, tiny_model_dir: Path) -> None:  # noqa: F811
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    namespace: dict = {"__name__": "__docs__"}
    for index, (language, code, reason) in enumerate(code_blocks(page)):
        if reason is not None:
            continue
        where = f"docs/{page}, block {index + 1}"
        if language == "python":
            exec(compile(code, where, "exec"), namespace)
            continue
        recipe = RECIPE_ARGUMENT.search(code)
        if recipe:
            overrides = stand_in_overrides(ROOT / recipe["recipe"], tiny_model_dir, workdir / "stand-in-run")[2:]
            if "--output_dir" in code:  # the page's own output directory is what its next blocks read
                at = overrides.index("--output_dir")
                del overrides[at : at + 2]
            code = code.rstrip() + " " + shlex.join(overrides)  # after the page's own options, so they win
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", code],
            cwd=workdir,
            env=environment,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert result.returncode == 0, f"{where} failed:\n{code}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
