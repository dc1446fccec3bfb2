"""`musehub clone` and `musehub synth` (musehub/cli/): human output, exit codes, parameters."""

from __future__ import annotations

from pathlib import Path

import pytest

from musehub.cli.clone import EXIT_FAILED, EXIT_OK, clone_command
from musehub.cli.parser import build_parser
from musehub.cli.synth import EXIT_USAGE, synth_command, synth_params
from musehub.synth import GABRIEL_MUSE
from tests.client.fake_hub import BASE, FakeHub


def test_clone_command_reports_success(
    fake_hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = clone_command(BASE, tmp_path / "song", quiet=False, transport=fake_hub.transport())
    out = capsys.readouterr()
    assert code == EXIT_OK
    assert "5 commits" in out.out and "checked out main" in out.out


def test_clone_no_zstd_asks_for_the_raw_pack(fake_hub: FakeHub, tmp_path: Path) -> None:
    args = build_parser().parse_args(["clone", BASE, str(tmp_path / "song"), "-q", "--no-zstd"])
    with_zstd = build_parser().parse_args(["clone", BASE])
    assert (args.zstd, with_zstd.zstd) == (False, True)
    code = clone_command(BASE, tmp_path / "song", True, transport=fake_hub.transport(), zstd=False)
    assert code == EXIT_OK
    fetch = next(s for s in fake_hub.seen if s.path.endswith("/fetch"))
    assert fetch.body["capabilities"] == ["mpack-chain", "mpack-url", "mpack-refs"]


def test_clone_command_reports_failure(
    fake_hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "song").mkdir()
    (tmp_path / "song" / "x").write_text("x")
    code = clone_command(BASE, tmp_path / "song", quiet=True, transport=fake_hub.transport())
    assert code == EXIT_FAILED
    assert "clone failed:" in capsys.readouterr().err


def test_synth_command_pushes(capsys: pytest.CaptureFixture[str]) -> None:
    hub = FakeHub()
    code = synth_command(
        BASE, "tok", None, commits=30, files=5, file_size=500, branches=2, transport=hub.transport()
    )
    assert code == EXIT_OK and len(hub.heads) == 2
    assert "Pushed 30 commits" in capsys.readouterr().out


def test_synth_command_reports_a_rejected_push(capsys: pytest.CaptureFixture[str]) -> None:
    hub = FakeHub()
    hub.heads["main"] = "f" * 64
    code = synth_command(
        BASE, None, None, commits=5, files=2, file_size=100, branches=1, transport=hub.transport()
    )
    assert code == EXIT_FAILED and "diverged" in capsys.readouterr().err


def test_synth_params() -> None:
    assert synth_params("gabriel-muse", None, None, None, None, None, 0, 1) == GABRIEL_MUSE
    tuned = synth_params("gabriel-muse", 100, None, None, None, None, 3, 1)
    assert tuned.commits == 100 and tuned.seed == 3 and tuned.files == GABRIEL_MUSE.files
    assert synth_params("gabriel-muse", None, None, None, None, None, 0, 10).commits == 13_290
    with pytest.raises(ValueError, match="unknown preset"):
        synth_params("nope", None, None, None, None, None, 0, 1)
    with pytest.raises(ValueError, match="without a preset"):
        synth_params(None, 10, None, None, None, None, 0, 1)


def test_synth_command_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert synth_command(BASE, None, "nope") == EXIT_USAGE
    assert "unknown preset" in capsys.readouterr().err
