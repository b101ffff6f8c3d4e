"""`push_to_hub`: export a run to a temporary folder and upload it as a Hub model repository; a PEFT adapter folder
(DCRRG's step-4 prefix) is uploaded alone, with its base model named by a Hub id and its own card."""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .export import export_model

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class PushResult:
    """Where the model went: the repo URL, the commit URL and the uploaded file names."""

    repo_url: str
    commit_url: str | None
    files: list[str]


def check_repo_id(repo_id: str) -> str:
    """`repo_id` must be ``org/name`` (letters, digits, ``-``, ``_``, ``.``)."""
    if not _REPO_ID.match(repo_id or "") or ".." in repo_id or repo_id.endswith((".git", ".")):
        raise ValueError(
            f"Invalid Hub repo id {repo_id!r}: use ORG/NAME (or USER/NAME) with letters, digits, '-', '_' and '.'."
        )
    return repo_id


def check_logged_in() -> None:
    """A ValueError that says how to log in when no Hugging Face token is configured (``HF_TOKEN`` or the token
    saved by ``hf auth login``), before anything is exported or uploaded."""
    import huggingface_hub

    if not huggingface_hub.get_token():
        raise ValueError(
            "no Hugging Face token: log in with `hf auth login` (or set the HF_TOKEN environment variable, or pass "
            "--token) and push again. Create a token with write access at https://huggingface.co/settings/tokens."
        )


def check_online() -> None:
    """A ValueError naming the setting when the Hugging Face Hub is switched off (``HF_HUB_OFFLINE``)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise ValueError("HF_HUB_OFFLINE is set, so the Hub cannot be reached: unset it (`unset HF_HUB_OFFLINE`) "
                         "and push again")  # fmt: skip


def push_to_hub(
    source: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
    license: str = "other",
    base_model: str | None = None,
    api: Any = None,
) -> PushResult:
    """Export `source` (a run folder or model folder) and upload it to the model repo `repo_id`; an adapter folder
    (`adapter_config.json`) is uploaded alone, its base model named by `base_model` (a Hub id; needed when the
    adapter names a local folder) and with its own card (`hf_rrg.hub.adapter_card`).

    The repo is created when missing (``HfApi.create_repo(..., exist_ok=True)``); the upload is one commit
    (``HfApi.upload_folder``). `api` is an ``huggingface_hub.HfApi`` (default: a new one with `token`). Without
    `token` and `api`, a missing login is an error before the export starts; so is offline mode without `api`.
    """
    from .adapter_card import is_adapter_folder, stage_adapter

    check_repo_id(repo_id)
    if api is None:
        check_online()
    if api is None and token is None:
        check_logged_in()
    adapter = is_adapter_folder(source)
    if base_model is not None and not adapter:
        raise ValueError(f"--base-model names the base of an adapter; {source} is not an adapter folder (no "
                         "adapter_config.json)")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="hf-rrg-push-") as tmp:
        target = Path(tmp) / repo_id.split("/")[-1]
        if adapter:
            folder = stage_adapter(Path(source), target, repo_id, base_model)
        else:
            folder = export_model(source, target, repo_id=repo_id, license=license)
        if api is None:
            from huggingface_hub import HfApi

            api = HfApi(token=token)
        files = sorted(path.name for path in folder.iterdir() if path.is_file())
        repo_url = api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            repo_type="model",
            folder_path=str(folder),
            commit_message=commit_message or f"Upload {repo_id.split('/')[-1]} exported with hf-rrg",
        )
    commit_url = getattr(commit, "commit_url", None) or (commit if isinstance(commit, str) else None)
    return PushResult(repo_url=str(repo_url), commit_url=commit_url, files=files)
