"""A `pip install unlearn-peft` (a wheel, not the editable install the tests run from) ships every subpackage."""

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_every_subpackage_is_listed_for_the_wheel():
    setuptools_table = (ROOT / "pyproject.toml").read_text().split("[tool.setuptools]")[1]
    listed = set(re.findall(r'"([\w.]+)"', re.search(r"packages = \[(.*?)\]", setuptools_table, re.S)[1]))
    on_disk = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "unlearn_peft").rglob("__init__.py")}
    assert "unlearn_peft.evaluation" in listed  # the parse found the list
    assert on_disk - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
