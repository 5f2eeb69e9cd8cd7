"""``hetacumn --version`` and ``hetacumn COMMAND --help`` exit 0 and say what they should."""

from __future__ import annotations

import argparse

import pytest

from hetacumn import __version__
from hetacumn.cli.main import COMMANDS, build_parser, main

# Options each foundation command must document (the engine commands are checked generically).
EXPECTED_OPTIONS = {
    "info": ["--datadir"],
    "simulate": ["--outdir", "--n-images", "--box", "--apix", "--snr", "--proportions", "--continuous", "--shift",
                 "--shift-dist", "--defocus-min", "--defocus-max", "--ctf-from", "--seed", "--overwrite"],
    "reconstruct": ["--output", "--poses", "--ctf", "--datadir", "--no-ctf", "--first", "--half-maps",
                    "--batch-size", "--device", "--overwrite"],
    "evaluate": ["--volume", "--reference", "--mask", "--poses", "--true-poses", "--box", "--z", "--labels",
                 "--states", "--output", "--overwrite"],
    "demo": ["--outdir", "--n-images", "--box", "--apix", "--snr", "--seed", "--overwrite"],
}


def _exit_code(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    return stop.value.code


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


def test_version(capsys):
    assert _exit_code(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"hetacumn {__version__}"


def test_top_level_help_lists_every_command(capsys):
    assert _exit_code(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help(command, capsys):
    assert _exit_code([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: hetacumn {command}")
    options = [opt for a in _subparser(command)._actions for opt in a.option_strings if opt.startswith("--")]
    assert set(EXPECTED_OPTIONS.get(command, [])) <= set(options)
    missing = [opt for opt in options if opt not in out]
    assert not missing, f"help of {command} does not name {missing}"
