"""Every ``flashsim`` sub-command names its options one way (rules in
:mod:`flashsim_coffea.commands._options`):

* input files: the positional ``inputs`` (metavar ``FILE.root``, ``FILESET.json|FILE.root`` or
  ``DATA``); the one exception is ``train-dnn``, ``--signal FILE.root... --background FILE.root...``;
* output: ``-o/--output``;
* progress bars off: ``--no-progress``, on every command that draws them; no ``--quiet``;
* the old spellings still parse (hidden from ``--help``, with a deprecation note).
"""

from __future__ import annotations

import argparse

import pytest

from flashsim_coffea.cli import build_parser

#: sub-commands that draw progress bars (tqdm or progress lines)
PROGRESS_COMMANDS = {"demo", "extract", "generate", "resimulate", "simulate", "train"}
#: positional arguments that are not input files
OTHER_POSITIONALS = {"spec", "process"}
INPUT_METAVARS = {"FILE.root", "FILESET.json|FILE.root", "DATA"}
#: spellings of inputs, outputs and progress switches that must not be visible in --help
FORBIDDEN = {"--input", "--inputs", "--files", "--file", "--data", "--quiet", "-q", "--silent", "--progress",
             "--model-dir", "--out", "--outdir"}
#: the documented exception: train-dnn's two roles
ROLE_OPTIONS = {"train-dnn": ("--signal", "--background")}


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


COMMANDS = sorted(_subparsers())


def _visible(p: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in p._actions if a.help != argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)]


def test_every_command_module_is_checked():
    assert {"efficiency", "extract", "generate", "resimulate", "run", "train", "train-dnn", "validate", "demo"} <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_input_files_are_the_positional_inputs(name):
    p = _subparsers()[name]
    positionals = [a for a in p._actions if not a.option_strings]
    for a in positionals:
        assert a.dest in OTHER_POSITIONALS | {"inputs"}, f"{name}: positional {a.dest!r} (input files must be 'inputs')"
    inputs = [a for a in positionals if a.dest == "inputs"]
    roles = ROLE_OPTIONS.get(name, ())
    for a in inputs:
        assert a.metavar in INPUT_METAVARS, f"{name}: inputs metavar {a.metavar!r}"
        assert a.nargs in ("+", 1), f"{name}: inputs nargs {a.nargs!r}"
    for a in _visible(p):
        if a.option_strings and a.dest not in ("inputs",):
            takes_files = any(s in roles for s in a.option_strings)
            assert not takes_files or (a.nargs == "+" and a.metavar == "FILE.root" and a.required), (name, a.option_strings)
    if roles:
        assert not inputs, f"{name}: inputs both positional and by role"
        assert {s for a in p._actions for s in a.option_strings} >= set(roles)


@pytest.mark.parametrize("name", COMMANDS)
def test_no_other_spelling_is_visible(name):
    p = _subparsers()[name]
    visible = {s for a in _visible(p) for s in a.option_strings}
    assert not visible & FORBIDDEN, f"{name}: {sorted(visible & FORBIDDEN)}"
    # hidden old spellings fill the same destinations as the new ones
    for a in p._actions:
        if a.help == argparse.SUPPRESS and a.option_strings:
            assert a.dest in ("inputs", "output", "no_progress"), (name, a.option_strings, a.dest)


@pytest.mark.parametrize("name", COMMANDS)
def test_output_is_dash_o_output(name):
    p = _subparsers()[name]
    for a in _visible(p):
        if a.dest == "output" or "-o" in a.option_strings or "--output" in a.option_strings:
            assert a.option_strings == ["-o", "--output"] and a.dest == "output", (name, a.option_strings, a.dest)


@pytest.mark.parametrize("name", COMMANDS)
def test_progress_flag_is_no_progress(name):
    p = _subparsers()[name]
    switches = [a for a in _visible(p) if any(w in s for s in a.option_strings for w in ("progress", "quiet", "silent"))]
    for a in switches:
        assert a.option_strings == ["--no-progress"] and a.dest == "no_progress", (name, a.option_strings)
    if name in PROGRESS_COMMANDS:
        assert switches, f"{name} draws progress bars: it needs --no-progress"
        assert isinstance(switches[0], argparse._StoreTrueAction)


@pytest.mark.parametrize("name", COMMANDS)
def test_help_renders(name):
    assert f"flashsim {name}" in _subparsers()[name].format_help()


def _parse(*argv):
    return build_parser().parse_args(list(argv))


def test_positional_inputs_and_options_in_any_order():
    a = _parse("validate", "jets", "--model", "m", "a.root", "b.root", "-o", "r")
    assert a.inputs == ["a.root", "b.root"] and a.model == "m" and a.output == "r"
    a = _parse("efficiency", "muons", "a.root", "b.root", "-o", "m")
    assert a.inputs == ["a.root", "b.root"] and a.output == "m"
    a = _parse("extract", "jets", "--synthetic", "10", "-o", "d.npz")
    assert a.inputs is None and a.synthetic == 10
    a = _parse("train", "jets", "d.npz", "-o", "m", "--no-progress")
    assert a.inputs == ["d.npz"] and a.no_progress
    a = _parse("resimulate", "in.root", "-o", "out.root", "--seed", "3", "--no-progress")
    assert a.inputs == ["in.root"] and a.no_progress
    a = _parse("generate", "ttbar", "-n", "5", "--seed", "1", "-o", "t.root", "--no-progress")
    assert a.no_progress and a.output == "t.root"
    a = _parse("train-dnn", "--signal", "s.root", "--background", "b1.root", "b2.root")
    assert a.signal == ["s.root"] and a.background == ["b1.root", "b2.root"] and a.output is None


@pytest.mark.parametrize(
    "argv, dest, value, old",
    [
        (["validate", "jets", "--input", "a.root", "b.root", "-o", "r"], "inputs", ["a.root", "b.root"], "--input"),
        (["train", "jets", "--data", "d.npz", "-o", "m"], "inputs", ["d.npz"], "--data"),
        (["efficiency", "jets", "a.root", "--model-dir", "m"], "output", "m", "--model-dir"),
    ],
)
def test_old_spellings_still_parse_with_a_deprecation_note(argv, dest, value, old, capsys):
    assert getattr(_parse(*argv), dest) == value
    err = capsys.readouterr().err
    assert f"{old} is deprecated" in err and f"flashsim {argv[0]}" in err


def test_demo_quiet_is_a_hidden_alias_of_no_progress(capsys):
    assert _parse("demo", "--no-progress").no_progress is True
    assert _parse("demo", "--quiet").no_progress is True
    assert _parse("demo").no_progress is False


def test_missing_inputs_and_too_many_are_clear_errors(tmp_path, capsys):
    from flashsim_coffea.cli import main

    assert main(["efficiency", "jets", "-o", str(tmp_path)]) == 2
    assert "input FILE.root" in capsys.readouterr().err
    assert main(["efficiency", "jets", "a.root"]) == 2
    assert "-o/--output" in capsys.readouterr().err
    assert main(["train", "jets", "a.npz", "--data", "b.npz", "-o", str(tmp_path / "m")]) == 2
    assert "one DATA file" in capsys.readouterr().err
    assert main(["train", "jets", "-o", str(tmp_path / "m")]) == 2
    assert "input DATA" in capsys.readouterr().err
    assert main(["extract", "jets", "-o", str(tmp_path / "d.npz")]) == 2
    assert "--synthetic" in capsys.readouterr().err
