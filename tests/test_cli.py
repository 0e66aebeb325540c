from __future__ import annotations

import pytest

from sidetune import __version__
from sidetune.cli import main


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "evaluate" in capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_unknown_config_is_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "definitely_not_a_config"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: config 'definitely_not_a_config'")
    assert "\n" not in err


def test_overrides_and_flags_in_any_order(monkeypatch: pytest.MonkeyPatch) -> None:
    import sidetune.grounding.recipe as recipe

    calls: list[tuple[str, list[str], bool]] = []
    monkeypatch.setattr(
        recipe, "train", lambda config, overrides, resume: calls.append((config, overrides, resume))
    )
    orders = [
        ["train", "sdst_synthetic", "--resume", "train.epochs=2", "run_dir=x"],
        ["train", "sdst_synthetic", "train.epochs=2", "--resume", "run_dir=x"],
        ["train", "--resume", "sdst_synthetic", "train.epochs=2", "run_dir=x"],
        ["train", "sdst_synthetic", "train.epochs=2", "run_dir=x", "--resume"],
    ]
    for argv in orders:
        assert main(argv) == 0
    assert calls == [("sdst_synthetic", ["train.epochs=2", "run_dir=x"], True)] * len(orders)


def test_stray_words_are_still_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "sdst_synthetic", "--resume", "--no-such-flag"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err
