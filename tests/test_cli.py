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
