"""`hf_rrg.hub.push_to_hub` and `hf-rrg push`: everything up to the network call (HfApi is replaced)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_hub_fixtures import make_run_dir, real_reports

from hf_rrg.cli import main
from hf_rrg.hub import push_to_hub
from hf_rrg.hub.model_card import read_front_matter


class RecordingApi:
    """Stands in for `huggingface_hub.HfApi`: records the calls and what the uploaded folder holds at upload time."""

    instances: list[RecordingApi] = []

    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.calls: list[tuple[str, dict]] = []
        self.uploaded: dict[str, bytes] = {}
        RecordingApi.instances.append(self)

    def create_repo(self, **kwargs):
        self.calls.append(("create_repo", kwargs))
        return f"https://huggingface.co/{kwargs['repo_id']}"

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs))
        folder = Path(kwargs["folder_path"])
        self.uploaded = {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}

        class Commit:
            commit_url = f"https://huggingface.co/{kwargs['repo_id']}/commit/abc123"

        return Commit()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, shared_data) -> Path:
    return make_run_dir(tmp_path_factory.mktemp("push") / "run", "r2gencmn", real_reports(shared_data))


def test_push_creates_the_repo_and_uploads_the_export(run_dir):
    api = RecordingApi()
    result = push_to_hub(run_dir, "my-org/r2gencmn-demo", private=True, api=api, commit_message="first")
    (create, create_kwargs), (upload, upload_kwargs) = api.calls
    assert create == "create_repo" and upload == "upload_folder"
    assert create_kwargs == {"repo_id": "my-org/r2gencmn-demo", "repo_type": "model", "private": True, "exist_ok": True}
    assert upload_kwargs["repo_id"] == "my-org/r2gencmn-demo" and upload_kwargs["repo_type"] == "model"
    assert upload_kwargs["commit_message"] == "first"
    assert not Path(upload_kwargs["folder_path"]).exists()  # the temporary export is cleaned up
    for name in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
                 "processor_config.json", "modeling_r2gencmn.py", "pipeline_rrg.py", "README.md", "metrics.json"):
        assert name in api.uploaded, name
    assert sorted(api.uploaded) == result.files
    assert result.repo_url == "https://huggingface.co/my-org/r2gencmn-demo"
    assert result.commit_url.endswith("/commit/abc123")
    assert api.uploaded["model.safetensors"] == (run_dir / "model" / "model.safetensors").read_bytes()
    card = api.uploaded["README.md"].decode()
    assert read_front_matter(card)["model-index"][0]["name"] == "r2gencmn-demo"
    assert 'pipeline(model="my-org/r2gencmn-demo", trust_remote_code=True)' in card
    assert "custom_pipelines" in json.loads(api.uploaded["config.json"])


@pytest.mark.parametrize("bad", ["no-slash", "a/b/c", "org/", "/name", "org/na me", "org/name.git"])
def test_invalid_repo_id_fails_before_any_call(run_dir, bad):
    api = RecordingApi()
    with pytest.raises(ValueError, match="Invalid Hub repo id"):
        push_to_hub(run_dir, bad, api=api)
    assert api.calls == []


def test_push_command(run_dir, monkeypatch, capsys):
    import huggingface_hub

    RecordingApi.instances.clear()
    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    assert main(["push", str(run_dir), "--repo-id", "me/tiny", "--token", "hf_x"]) == 0
    (api,) = RecordingApi.instances
    assert api.token == "hf_x"
    assert api.calls[0][1]["private"] is False
    out = capsys.readouterr().out
    assert "to https://huggingface.co/me/tiny" in out and "commit/abc123" in out
    assert main(["push", str(run_dir), "--repo-id", "bad id"]) == 1
    assert "Invalid Hub repo id" in capsys.readouterr().err
