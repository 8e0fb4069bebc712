"""`load_rows` on local data never touches the network (datasets' download-count request included)."""

import json

import datasets.config
import pytest

from unlearn_peft.sources import load_rows

from .hub_server import block_non_loopback_network


@pytest.mark.parametrize("as_directory", [False, True])
def test_local_rows_load_without_any_network_request(tmp_path, monkeypatch, as_directory):
    rows = [{"question": f"Q{i}?", "answer": f"A{i}."} for i in range(3)]
    (tmp_path / "forget.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr("datasets.config.HF_HUB_OFFLINE", False)
    monkeypatch.setattr("datasets.config.HF_UPDATE_DOWNLOAD_COUNTS", True)  # datasets' default
    attempts: list[str] = []
    block_non_loopback_network(monkeypatch, attempts)
    if as_directory:
        loaded = load_rows(str(tmp_path), "forget")
    else:
        loaded = load_rows(str(tmp_path / "forget.jsonl"))
    assert loaded.to_list() == rows
    assert attempts == []
    assert datasets.config.HF_UPDATE_DOWNLOAD_COUNTS is True  # restored after the load
