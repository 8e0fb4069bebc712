"""The `fake_hub` fixture, driven by the real huggingface_hub client over loopback HTTP (no models, no internet)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub import HfApi, constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError
from huggingface_hub.utils._runtime import is_xet_available

from tests.hub_server import INVALID_CREDENTIALS, FakeHub, NetworkAccessBlocked, git_blob_oid

REPO = "test-user/tiny-adapter"
README = "---\nlicense: mit\nlibrary_name: peft\ntags:\n- unlearning\n---\n# Tiny adapter\n"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder like a saved adapter: a JSON config, ~100 KB of random weights and a model card."""
    root = tmp_path / "adapter"
    root.mkdir()
    (root / "adapter_config.json").write_text(json.dumps({"r": 8, "lora_alpha": 16}), encoding="utf-8")
    (root / "adapter_model.safetensors").write_bytes(os.urandom(100 * 1024))
    (root / "README.md").write_text(README, encoding="utf-8")
    return root


def local_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(params=["xet-installed", "xet-disabled"])
def upload_path(request: pytest.FixtureRequest, fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> str:
    """`upload_folder` takes the pipelined upload when hf_xet is installed, else plain `create_commit`."""
    if request.param == "xet-installed":
        if not is_xet_available():
            pytest.skip("hf_xet is not installed")
    else:
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    return request.param


def test_fixture_points_the_client_at_the_fake_hub(fake_hub: FakeHub, tmp_path: Path) -> None:
    assert fake_hub.url.startswith("http://127.0.0.1:")
    assert constants.ENDPOINT == fake_hub.url == os.environ["HF_ENDPOINT"]
    assert constants.HUGGINGFACE_CO_URL_TEMPLATE.startswith(fake_hub.url + "/")
    assert huggingface_hub.hf_api.api.endpoint == fake_hub.url
    assert HfApi().endpoint == fake_hub.url
    assert Path(constants.HF_HUB_CACHE) == tmp_path / "hf_home" / "hub"
    assert "HF_TOKEN" not in os.environ and huggingface_hub.get_token() is None
    assert not constants.HF_HUB_OFFLINE and constants.HF_HUB_DISABLE_TELEMETRY

    transformers_hub = pytest.importorskip("transformers.utils.hub")
    assert transformers_hub.hf_api().endpoint == fake_hub.url


def test_upload_list_download_round_trip(fake_hub: FakeHub, folder: Path, upload_path: str) -> None:
    api = HfApi(token=fake_hub.token)
    url = api.create_repo(REPO, exist_ok=True, private=False)
    assert url.repo_id == REPO and url.startswith(fake_hub.url)
    assert api.create_repo(REPO, exist_ok=True).repo_id == REPO  # 409 swallowed by exist_ok

    info = api.upload_folder(repo_id=REPO, folder_path=folder, commit_message="Upload adapter")
    uploaded = local_files(folder)
    assert fake_hub.files(REPO) == uploaded
    assert info.oid == fake_hub.head(REPO) and fake_hub.commits(REPO)[0].title == "Upload adapter"
    assert sorted(api.list_repo_files(REPO)) == sorted(uploaded)
    assert api.repo_exists(REPO) and not api.repo_exists("test-user/missing")

    model = api.model_info(REPO)
    assert model.sha == fake_hub.head(REPO) and model.private is False
    assert model.card_data is not None and model.card_data.library_name == "peft"
    assert "unlearning" in model.tags

    # Patterns are honoured and the bytes survive the trip (the cache starts empty).
    snapshot = Path(snapshot_download(REPO, allow_patterns=["*.json", "*.safetensors"]))
    assert snapshot.name == fake_hub.head(REPO)
    assert local_files(snapshot) == {k: v for k, v in uploaded.items() if k != "README.md"}
    readme = Path(hf_hub_download(REPO, "README.md"))
    assert readme.read_text(encoding="utf-8") == README

    # The same folder again changes nothing: the client compares blob ids from /preupload and skips the commit.
    nb_commits = len(fake_hub.commits(REPO))
    api.upload_folder(repo_id=REPO, folder_path=folder)
    assert len(fake_hub.commits(REPO)) == nb_commits

    # A real change is a new commit on main, and a fresh download sees it.
    (folder / "adapter_config.json").write_text(json.dumps({"r": 16}), encoding="utf-8")
    second = api.upload_folder(repo_id=REPO, folder_path=folder, commit_message="Second upload")
    assert second.oid != info.oid == fake_hub.commits(REPO)[1].oid
    assert fake_hub.head(REPO) == second.oid
    assert json.loads(fake_hub.files(REPO)["adapter_config.json"]) == {"r": 16}
    fresh = Path(snapshot_download(REPO, allow_patterns="*.json"))
    assert fresh.name == second.oid and json.loads((fresh / "adapter_config.json").read_text()) == {"r": 16}
    assert json.loads((snapshot / "adapter_config.json").read_text()) == {"r": 8, "lora_alpha": 16}

    # The requests the client made, for tests to assert on.
    calls = fake_hub.calls()
    assert ("POST", "/api/repos/create") in calls
    assert ("POST", f"/api/models/{REPO}/preupload/main") in calls
    assert ("POST", f"/api/models/{REPO}/commit/main") in calls
    assert ("HEAD", f"/{REPO}/resolve/{second.oid}/adapter_config.json") in calls
    assert fake_hub.unhandled == [] and fake_hub.blocked_connections == []


def test_upload_file_and_download_by_filename(fake_hub: FakeHub) -> None:
    api = fake_hub.api()
    api.create_repo(REPO)
    payload = os.urandom(4096)
    api.upload_file(path_or_fileobj=payload, path_in_repo="weights/part-0.bin", repo_id=REPO)
    assert fake_hub.files(REPO) == {"weights/part-0.bin": payload}
    assert Path(hf_hub_download(REPO, "weights/part-0.bin")).read_bytes() == payload
    assert [f.path for f in api.list_repo_tree(REPO)] == ["weights"]
    [entry] = api.get_paths_info(REPO, ["weights/part-0.bin"])
    assert entry.blob_id == git_blob_oid(payload) and entry.size == len(payload)


def test_tree_listing_follows_pagination(fake_hub: FakeHub) -> None:
    fake_hub.tree_page_size = 2
    fake_hub.create_repo(REPO)
    files = {f"shard-{i}.bin": bytes([i]) * 10 for i in range(5)} | {"sub/a.txt": "a", "sub/deeper/b.txt": "b"}
    fake_hub.add_commit(REPO, files)
    assert sorted(HfApi().list_repo_files(REPO)) == sorted(files)
    tree_calls = [r for r in fake_hub.requests if "/tree/" in r.path]
    assert len(tree_calls) > 1 and "cursor" in tree_calls[-1].query


@pytest.mark.parametrize("token", ["hf_wrong_token", False], ids=["wrong-token", "no-token"])
def test_writes_need_the_accepted_token(fake_hub: FakeHub, folder: Path, token: str | bool) -> None:
    fake_hub.create_repo(REPO)
    before = fake_hub.head(REPO)
    api = HfApi(token=token)

    with pytest.raises(HfHubHTTPError) as raised:
        api.upload_folder(repo_id=REPO, folder_path=folder)
    assert raised.value.response.status_code == 401
    assert not isinstance(raised.value, RepositoryNotFoundError)  # "invalid credentials", not "no such repo"
    assert INVALID_CREDENTIALS in str(raised.value)

    with pytest.raises(HfHubHTTPError) as raised:
        api.create_repo("test-user/another-repo")
    assert raised.value.response.status_code == 401
    assert fake_hub.head(REPO) == before and not fake_hub.repo_exists("test-user/another-repo")


def test_wrong_token_is_refused_even_for_public_reads(fake_hub: FakeHub) -> None:
    fake_hub.create_repo(REPO)
    with pytest.raises(HfHubHTTPError) as raised:
        HfApi(token="hf_wrong_token").model_info(REPO)
    assert raised.value.response.status_code == 401
    assert HfApi(token=False).model_info(REPO).sha == fake_hub.head(REPO)


def test_injected_commit_failure_makes_the_upload_raise(fake_hub: FakeHub, folder: Path, upload_path: str) -> None:
    api = fake_hub.api()
    api.create_repo(REPO)
    before = fake_hub.head(REPO)
    # The pipelined upload (hf_xet installed) retries a failed commit 5 times: fail every attempt.
    fake_hub.fail_next("/commit/", status=500, times=6)
    with pytest.raises(HfHubHTTPError) as raised:
        api.upload_folder(repo_id=REPO, folder_path=folder)
    assert raised.value.response.status_code == 500
    assert fake_hub.head(REPO) == before and fake_hub.files(REPO) == {}
    commit_statuses = [r.status for r in fake_hub.requests if r.path.endswith("/commit/main")]
    assert set(commit_statuses) == {500}
    expected_attempts = 6 if upload_path == "xet-installed" else 1
    assert len(commit_statuses) == expected_attempts
    fake_hub.clear_failures()
    api.upload_folder(repo_id=REPO, folder_path=folder)  # the server is healthy again
    assert fake_hub.files(REPO) == local_files(folder)


def test_single_commit_failure_raises_from_create_commit_but_is_retried_by_the_pipeline(
    fake_hub: FakeHub, folder: Path
) -> None:
    api = fake_hub.api()
    api.create_repo(REPO)
    fake_hub.fail_next("/commit/", status=500)
    with pytest.raises(HfHubHTTPError):  # upload_file -> create_commit: no retry on the commit call
        api.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id=REPO)
    assert fake_hub.backoff_sleeps == []

    if not is_xet_available():
        return
    fake_hub.fail_next("/commit/", status=503)
    api.upload_folder(repo_id=REPO, folder_path=folder)  # one transient failure: retried after a (skipped) sleep
    assert fake_hub.files(REPO) == local_files(folder)
    assert fake_hub.backoff_sleeps == [1]


def test_private_repo_needs_the_token(fake_hub: FakeHub, folder: Path) -> None:
    api = fake_hub.api()
    api.create_repo(REPO, private=True)
    api.upload_folder(repo_id=REPO, folder_path=folder)
    assert fake_hub.is_private(REPO)

    anonymous = HfApi(token=False)
    with pytest.raises(RepositoryNotFoundError):
        anonymous.model_info(REPO)
    assert not anonymous.repo_exists(REPO)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(REPO, "adapter_config.json", token=False)
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download(REPO, token=False)

    assert api.model_info(REPO).private is True
    path = snapshot_download(REPO, token=fake_hub.token)
    assert local_files(Path(path)) == local_files(folder)


def test_module_level_functions_and_hf_token_env(
    fake_hub: FakeHub, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", fake_hub.token)
    huggingface_hub.create_repo(REPO)
    huggingface_hub.upload_folder(repo_id=REPO, folder_path=folder, allow_patterns="*.json")
    assert huggingface_hub.file_exists(REPO, "adapter_config.json")
    assert not huggingface_hub.file_exists(REPO, "README.md")
    assert huggingface_hub.whoami()["name"] == fake_hub.username
    assert all(r.headers.get("authorization") == f"Bearer {fake_hub.token}" for r in fake_hub.requests)


def test_subprocess_uses_the_fake_hub_through_the_environment(fake_hub: FakeHub) -> None:
    fake_hub.create_repo(REPO)
    fake_hub.add_commit(REPO, {"config.json": '{"from": "seed"}'})
    code = f"import huggingface_hub as h; print(open(h.hf_hub_download('{REPO}', 'config.json')).read())"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == '{"from": "seed"}'
    assert fake_hub.calls() == [
        ("HEAD", f"/{REPO}/resolve/main/config.json"),
        ("GET", f"/{REPO}/resolve/main/config.json"),
    ]


def test_non_loopback_connections_are_refused(fake_hub: FakeHub) -> None:
    with pytest.raises(NetworkAccessBlocked):
        socket.create_connection(("huggingface.co", 443), timeout=1)
    with pytest.raises(NetworkAccessBlocked):
        socket.socket().connect(("192.0.2.1", 443))  # TEST-NET-1, never routed
    with pytest.raises(NetworkAccessBlocked):
        HfApi(endpoint="https://huggingface.co", token=False).model_info("gpt2")
    assert len(fake_hub.blocked_connections) == 3
    fake_hub.blocked_connections.clear()  # expected here; otherwise the fixture fails the test at teardown


def test_transformers_and_peft_push_and_load_through_the_fake_hub(
    fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`push_to_hub` / `from_pretrained` of transformers and peft reach the fake hub too (tiny random model)."""
    torch = pytest.importorskip("torch")
    from peft import AutoPeftModelForCausalLM, LoraConfig, PeftModel, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    monkeypatch.setenv("HF_TOKEN", fake_hub.token)
    config = LlamaConfig(
        vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).push_to_hub("test-user/tiny-base")
    base = LlamaForCausalLM.from_pretrained("test-user/tiny-base")
    lora = LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False)
    peft_model = get_peft_model(base, lora)
    peft_model.push_to_hub("test-user/tiny-lora", private=True)
    assert fake_hub.is_private("test-user/tiny-lora")
    assert {"adapter_config.json", "adapter_model.safetensors"} <= set(fake_hub.files("test-user/tiny-lora"))
    assert json.loads(fake_hub.files("test-user/tiny-lora")["adapter_config.json"])["base_model_name_or_path"] == (
        "test-user/tiny-base"
    )

    loaded = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained("test-user/tiny-base"), "test-user/tiny-lora")
    auto = AutoPeftModelForCausalLM.from_pretrained("test-user/tiny-lora")
    inputs = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        expected = peft_model(inputs).logits
        assert torch.allclose(loaded(inputs).logits, expected)
        assert torch.allclose(auto(inputs).logits, expected)
    assert fake_hub.unhandled == []
