"""Pushing to the Hugging Face Hub (no network: huggingface_hub's HfApi is replaced by a fake that
records calls), the token never shown, and weights from the Hub only from a configured repo."""

from __future__ import annotations

import logging
from pathlib import Path

import huggingface_hub
import pytest

from cifar_demo import weights as W
from cifar_demo.__main__ import main
from cifar_demo.reporting import export
from cifar_demo.weights import hub

from .helpers import Tiny, save_tiny

TOKEN = "hf_SecretTokenValue1234567890"


class FakeHub:
    """Stands in for HfApi: records every call with its arguments; copies what would be uploaded."""

    instances: list["FakeHub"] = []
    readme: str | None = None          # the repo's README.md, None: the repo has none
    fail_with: Exception | None = None

    def __init__(self, token=None, **kw):
        self.token, self.calls, self.uploaded = token, [], {}
        FakeHub.instances.append(self)

    def create_repo(self, repo_id, *, private=None, exist_ok=False, repo_type=None, **kw):
        self.calls.append(("create_repo", repo_id, dict(private=private, exist_ok=exist_ok, repo_type=repo_type)))
        return huggingface_hub.RepoUrl(f"https://huggingface.co/{repo_id}")

    def file_exists(self, repo_id, filename, *, repo_type=None, **kw):
        self.calls.append(("file_exists", repo_id, filename))
        return filename == "README.md" and FakeHub.readme is not None

    def hf_hub_download(self, repo_id, filename, *, repo_type=None, **kw):
        self.calls.append(("hf_hub_download", repo_id, filename))
        path = Path(kw.get("cache_dir") or FakeHub.tmp) / "README.md"
        path.write_text(FakeHub.readme)
        return str(path)

    def upload_folder(self, *, repo_id, folder_path, commit_message=None, repo_type=None, allow_patterns=None,
                      **kw):
        self.calls.append(("upload_folder", repo_id, dict(commit_message=commit_message, repo_type=repo_type,
                                                          allow_patterns=allow_patterns,
                                                          path_in_repo=kw.get("path_in_repo"))))
        if FakeHub.fail_with:
            raise FakeHub.fail_with
        # The folder is a temp one: keep what it held when the upload ran.
        self.uploaded = {p.name: p.read_bytes() for p in Path(folder_path).iterdir()}


@pytest.fixture()
def fake_hub(tmp_path, monkeypatch):
    FakeHub.instances, FakeHub.readme, FakeHub.fail_with, FakeHub.tmp = [], None, None, tmp_path
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    return FakeHub


def test_push_files_uploads_the_pair_and_a_readme_in_one_commit(tmp_path, fake_hub):
    _, w, c = save_tiny(tmp_path / "pair")
    result = W.push_files(w, c, "alice/cifar-weights", private=True)
    [api] = fake_hub.instances
    assert api.token == TOKEN  # passed explicitly (from HF_TOKEN), so messages can be scrubbed of it
    assert [call[0] for call in api.calls] == ["create_repo", "file_exists", "upload_folder"]
    assert api.calls[0] == ("create_repo", "alice/cifar-weights",
                            dict(private=True, exist_ok=True, repo_type="model"))
    files = ["tiny.safetensors", "tiny.json", "README.md"]
    assert api.calls[2][2]["allow_patterns"] == files and api.calls[2][2]["repo_type"] == "model"
    assert api.uploaded["tiny.safetensors"] == w.read_bytes() and api.uploaded["tiny.json"] == c.read_bytes()
    readme = api.uploaded["README.md"].decode()
    assert readme.startswith("---\ntags:") and hub.README_MARK in readme
    assert "Test accuracy: 90.12% (91.05% with test-time augmentation) on CIFAR-10 (JPEG export)" in readme
    assert "CIFAR_DEMO_HUB_REPO=alice/cifar-weights" in readme
    assert result.url == "https://huggingface.co/alice/cifar-weights" and result.files == files
    assert result.card.model == "tiny"


def test_a_readme_the_user_wrote_is_kept_and_ours_is_refreshed(tmp_path, fake_hub):
    _, w, c = save_tiny(tmp_path / "pair")
    fake_hub.readme = "# My own page\n"
    assert W.push_files(w, c, "alice/x").files == ["tiny.safetensors", "tiny.json"]
    assert "README.md" not in fake_hub.instances[-1].uploaded
    fake_hub.readme = f"---\n---\n{hub.README_MARK}\n# old\n"
    assert W.push_files(w, c, "alice/x").files[-1] == "README.md"
    assert W.push_files(w, c, "alice/x", readme=False).files == ["tiny.safetensors", "tiny.json"]
    assert "file_exists" not in [call[0] for call in fake_hub.instances[-1].calls]


def test_a_push_into_a_folder_never_touches_the_root_files_nor_the_readme(tmp_path, fake_hub):
    # What a shared app does with a visitor's run: the weights at the repo's root (the ones
    # from_hub serves) stay the Space owner's.
    _, w, c = save_tiny(tmp_path / "pair")
    result = W.push_files(w, c, "alice/x", folder="visitors/20261202-run")
    [api] = fake_hub.instances
    upload = api.calls[-1][2]
    assert upload["path_in_repo"] == "visitors/20261202-run" and "README.md" not in upload["allow_patterns"]
    assert "file_exists" not in [call[0] for call in api.calls]
    assert result.files == ["visitors/20261202-run/tiny.safetensors", "visitors/20261202-run/tiny.json"]
    for bad in ("../up", "a/../../b", "with space"):
        with pytest.raises(W.WeightsError, match="not a folder name"):
            W.push_files(w, c, "alice/x", folder=bad)


def test_a_hub_error_holding_the_token_is_reported_without_it(tmp_path, fake_hub, caplog):
    _, w, c = save_tiny(tmp_path / "pair")
    other = "hf_AnotherTokenFromTheLogin99"
    fake_hub.fail_with = RuntimeError(f"401 Unauthorized: header Authorization: Bearer {TOKEN} ({other})")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(W.WeightsError) as e:
        W.push_files(w, c, "alice/x")
    msg = str(e.value)
    assert msg.startswith("push to the Hugging Face Hub failed while uploading to alice/x: RuntimeError: 401")
    assert TOKEN not in msg and other not in msg and "Bearer ***" in msg
    assert e.value.__cause__ is None and e.value.__suppress_context__  # no chained traceback with it
    assert TOKEN not in caplog.text


def test_push_command_exports_then_pushes_and_never_prints_the_token(tmp_path, fake_hub, capsys, monkeypatch):
    exported = []

    def quick_export(run_id, *, runs_dir, out_dir, dtype, data, device):
        # Stands in for the scoring (tests/test_export_download.py runs the real export).
        exported.append((run_id, runs_dir, Path(out_dir), dtype))
        _, w, c = save_tiny(Path(out_dir))
        return w, c, W.ModelCard.load(c)

    monkeypatch.setattr(export, "export_run", quick_export)
    assert main(["push", "RUN1", "--repo", "alice/x", "--runs-dir", "R", "--private", "--dtype", "float16"]) == 0
    out = capsys.readouterr().out
    assert "pushed tiny (test accuracy 90.12% on CIFAR-10 (JPEG export)) to https://huggingface.co/alice/x" in out
    assert "tiny.safetensors, tiny.json, README.md" in out and TOKEN not in out
    [(run_id, runs_dir, out_dir, dtype)] = exported
    assert (run_id, runs_dir, dtype) == ("RUN1", "R", "float16") and not out_dir.exists()  # temp, removed
    api = fake_hub.instances[-1]
    assert api.calls[0][2]["private"] is True and api.calls[-1][2]["commit_message"] == "cifar-demo push: run RUN1"

    fake_hub.fail_with = OSError(f"connection reset (token={TOKEN})")
    assert main(["push", "RUN1", "--repo", "alice/x"]) == 2
    captured = capsys.readouterr()
    assert "error: push to the Hugging Face Hub failed" in captured.err and "token=***" in captured.err
    assert TOKEN not in captured.err + captured.out and "Traceback" not in captured.err


def test_bad_repo_or_no_token_is_refused_before_the_export(fake_hub, capsys, monkeypatch):
    monkeypatch.setattr(export, "export_run", lambda *a, **kw: pytest.fail("exported before checking"))
    for bad in ("no-slash", "a/b/c", "../x", "alice/x.git", "alice/"):
        assert main(["push", "RUN1", "--repo", bad]) == 2
        assert "is not a Hugging Face repo id: give USER/NAME" in capsys.readouterr().err
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    assert main(["push", "RUN1", "--repo", "alice/x"]) == 2
    assert "no Hugging Face token: set HF_TOKEN" in capsys.readouterr().err
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_FromTheLogin12345")
    assert hub.resolve_token() == "hf_FromTheLogin12345"  # `hf auth login` is used when HF_TOKEN is unset
    assert fake_hub.instances == []


def test_no_hub_repo_configured_means_no_download_and_a_message_saying_how(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **kw: calls.append(a))
    monkeypatch.delenv("CIFAR_DEMO_HUB_REPO", raising=False)
    assert W.DEFAULT_HUB_REPO is None and W.hub_repo() is None
    with pytest.raises(W.WeightsError) as e:
        W.load_weights("resnet18", directory=tmp_path, model=Tiny())
    msg = str(e.value)
    for part in ["resnet18.safetensors and resnet18.json not found", str(tmp_path),
                 "no Hugging Face Hub repo is configured", "CIFAR_DEMO_HUB_REPO=USER/NAME",
                 "python -m cifar_demo push RUN_ID --repo USER/NAME", "python -m cifar_demo train --model resnet18"]:
        assert part in msg, part
    assert calls == []
    monkeypatch.setenv("CIFAR_DEMO_HUB_REPO", "  ")  # blank is unset, not a repo named ''
    assert W.hub_repo() is None
    # Weights in weights/ need no repo at all.
    save_tiny(tmp_path)
    assert W.load_weights("tiny", directory=tmp_path, model=Tiny())[1].model == "tiny" and calls == []
