"""What a new user meets in the first hour (issue 17): help that answers, errors in command-line terms, and a
README whose main job installs no test tools. (`generate` on a run folder, its progress bar and `--quiet`, and the
export's single bar are in test_hub_cli.py; start-up time in test_startup.py.)"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from hf_rrg.cli import _sub_parsers, build_parser, main

REPO = Path(__file__).resolve().parents[1]


def leaf_commands(parser: argparse.ArgumentParser):
    children = list(_sub_parsers(parser))
    if not children:
        yield parser
    for child in children:
        yield from leaf_commands(child)


def help_text(capsys, *command: str) -> str:
    with pytest.raises(SystemExit) as done:
        main([*command, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def test_train_help_lists_the_shipped_configs(capsys):
    shipped = sorted(path.stem for path in (REPO / "training_scripts" / "configs").glob("*.yaml"))
    text = " ".join(help_text(capsys, "train").split())  # argparse wraps the list
    assert "shipped configs" in text and "r2gencmn_demo" in shipped
    for name in shipped:
        assert re.search(rf"\b{name}\b", text), f"{name} is missing from `hf-rrg train --help`"


def test_evaluate_protocol_has_help(capsys):
    text = " ".join(help_text(capsys, "evaluate").split())
    protocol = text[text.index("--protocol {default,r2gen,chinese} ") :]
    for choice in ("default:", "r2gen:", "chinese:"):
        assert choice in protocol[:600], f"--protocol help does not explain {choice}"


# The dcrrg commands belong to the DCRRG work (issue 17's PEFT item); their options are checked there.
@pytest.mark.parametrize("leaf", [p for p in leaf_commands(build_parser()) if " dcrrg " not in f"{p.prog} "],
                         ids=lambda parser: parser.prog)  # fmt: skip
def test_every_option_has_help(leaf: argparse.ArgumentParser):
    missing = [action.option_strings or action.dest for action in leaf._actions if action.help is None]
    assert not missing, f"{leaf.prog}: options without help {missing}"


def test_every_command_is_named_by_its_full_path_in_errors():
    """`main` prints errors as ``{command_name}: error: ...``; a nested command names itself (`hf-rrg data info`),
    never only its group."""
    parser = build_parser()
    leaves = list(leaf_commands(parser))
    assert {"hf-rrg data info", "hf-rrg data export", "hf-rrg generate", "hf-rrg xpronet labels"} <= {
        leaf.prog for leaf in leaves
    }
    for leaf in leaves:
        assert leaf.get_default("command_name") == leaf.prog


def test_nested_command_errors_name_the_command(capsys):
    for command in (["data", "info", "not_a_builder"], ["data", "export", "not_a_builder", "--out", "x"]):
        assert main(command) == 1
        assert capsys.readouterr().err.startswith(
            f"hf-rrg {command[0]} {command[1]}: error: Unknown dataset builder"
        )


def test_builder_options_are_written_as_the_command_line_sets_them():
    from hf_rrg.data.commands import as_set_options

    options = {"skip_missing_images", "min_images", "drop_empty_reports"}
    message = "5 of 9 image files are missing. Put them there, or pass skip_missing_images=True to drop them."
    assert as_set_options(message, options) == (
        "5 of 9 image files are missing. Put them there, or pass `--set skip_missing_images=true` to drop them."
    )
    assert as_set_options(
        "(`drop_empty_reports=True` drops them; min_images=2)", options, "data.builder_kwargs."
    ) == (
        "(`--set data.builder_kwargs.drop_empty_reports=true` drops them; `--set data.builder_kwargs.min_images=2`)"
    )
    assert as_set_options("trust_remote_code=True is not a builder option", options) == (
        "trust_remote_code=True is not a builder option"
    )


def test_data_info_missing_images_error_says_the_cli_option(tmp_path, capsys, shared_data):
    """The iu_xray builder's own message (for Python users) says ``skip_missing_images=True``; from the command
    line the same error says ``--set skip_missing_images=true``, which is what works there."""
    (tmp_path / "annotation.json").write_bytes((shared_data / "iu_xray" / "annotation.json").read_bytes())
    command = ["data", "info", "iu_xray", "--data-dir", str(tmp_path), "--cache-dir", str(tmp_path / "cache")]
    assert main(command) == 1
    err = capsys.readouterr().err
    assert (
        err.startswith("hf-rrg data info: error: ") and "image files for iu_xray (r2gen) are missing" in err
    )
    assert "pass `--set skip_missing_images=true` to drop the studies" in err
    assert "skip_missing_images=True" not in err


def _bash_block(readme: str) -> list[str]:
    block = readme[readme.index("```bash\n") + len("```bash\n") :]
    return block[: block.index("```")].splitlines()


def test_readme_main_job_installs_no_dev_extra_and_ci_runs_the_test_command():
    lines = _bash_block((REPO / "README.md").read_text(encoding="utf-8"))
    main_job = lines[lines.index(next(line for line in lines if line.startswith("# the main job"))) + 1 :]
    main_job = next(line for line in main_job if not line.startswith("#"))
    assert "pip install . &&" in main_job and "[dev]" not in main_job and "hf-rrg train" in main_job
    test_command = lines[lines.index(next(line for line in lines if line.startswith("# the tests"))) + 1]
    assert 'pip install ".[dev]"' in test_command and "pytest" in test_command
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert test_command in ci, ".ci/run must run the README's test command as written"
