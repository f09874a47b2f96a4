"""The README's commands are true. Every `aetrack ...` and `mlflow ...` command in its shell blocks
parses against the real click commands (option names and values, nothing run); every `mlflow
run` names an MLproject entry point and its parameters, and the command MLproject makes of them
parses too; every `make X` is a Makefile target (followed through `make -n` to the `mlflow run` it
starts) and every `VAR=` one of its variables; Python blocks use what `aetrack` exports; local
links point at files. Commands in inline code are checked for their option names."""

from __future__ import annotations

import ast
import dataclasses
import os
import re
import shlex
import subprocess
from pathlib import Path

import click
import pytest
import yaml

import aetrack
from aetrack.cli import cli as aetrack_cli
from aetrack.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SHELL_BLOCKS = {"", "bash", "sh", "shell", "console"}
# `<run id>`: a value the reader fills in; a real-looking run id parses wherever one is expected.
PLACEHOLDER = re.compile(r"<[^<>\n]+>")
RUN_ID = "0123456789abcdef0123456789abcdef"
# Targets and pages still to be made (the test says when one exists: empty it then).
PENDING_TARGETS: set[str] = set()
PENDING_PAGES: set[str] = set()


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of each ``` block."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)]


def shell_commands(text: str) -> list[list[str]]:
    """The commands of the shell blocks as words: continuations joined, comments dropped, each side
    of `|`, `&&` and `;` a command of its own, leading `VAR=value` assignments left out."""
    commands = []
    for language, body in fenced_blocks(text):
        if language not in SHELL_BLOCKS:
            continue
        for line in body.replace("\\\n", " ").splitlines():
            words, command = shlex.split(PLACEHOLDER.sub(RUN_ID, line), comments=True), []
            for word in [*words, ";"]:
                if word in ("|", "&&", ";", "||"):
                    while command and re.fullmatch(r"[A-Z_]+=.*", command[0]):
                        command.pop(0)
                    if command:
                        commands.append(command)
                    command = []
                else:
                    command.append(word)
    return commands


def inline_commands(text: str) -> list[list[str]]:
    """`aetrack ...`, `mlflow ...` and `make ...` written in inline code, outside the blocks."""
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    spans = re.findall(r"`([^`\n]+)`", prose.replace("\n", " "))
    return [shlex.split(PLACEHOLDER.sub(RUN_ID, s)) for s in spans if re.match(r"(aetrack|mlflow|make) ", s)]


def _leaf(group: click.Group, prog: str, words: list[str]) -> tuple[click.Command, str, list[str]]:
    command, path = group, [prog]
    while isinstance(command, click.Group) and words and not words[0].startswith("-"):
        sub = command.get_command(click.Context(command), words[0])
        if sub is None:
            raise click.UsageError(f"no command {' '.join([*path, words[0]])!r}")
        command, path, words = sub, [*path, words[0]], words[1:]
    return command, " ".join(path), words


def click_problem(group: click.Group, prog: str, words: list[str], strict: bool) -> str | None:
    """Why `prog words` does not parse (None if it does). Not strict: only the option names."""
    try:
        command, path, rest = _leaf(group, prog, words)
    except click.UsageError as exc:
        return exc.format_message()
    known = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)} | {"-h", "--help"}
    for word in rest:
        if word == "--":
            break
        if word.startswith("-") and not re.fullmatch(r"-\d.*", word) and word.split("=")[0] not in known:
            return f"{path}: no option {word.split('=')[0]}"
    if not strict or (isinstance(command, click.Group) and not rest):
        return None
    try:
        command.make_context(path, list(rest))
    except click.exceptions.Exit:  # --help
        return None
    except click.ClickException as exc:
        return f"{path}: {exc.format_message()}"
    return None


def _mlflow_cli() -> click.Group:
    import mlflow.cli  # heavy (about 3 s): only for the README's mlflow commands

    return mlflow.cli.cli


def mlflow_run_problem(words: list[str]) -> str | None:
    """`mlflow run . -e X -P k=v` (already parsed by mlflow's CLI): X is an MLproject entry point, each
    k one of its parameters, and the command MLproject makes of them (defaults filled in, quoted as
    mlflow quotes them) parses."""
    run = _mlflow_cli().get_command(click.Context(_mlflow_cli()), "run")
    params = run.make_context("mlflow run", list(words)).params
    if params["uri"] != ".":
        return f"mlflow run {params['uri']}: the project is '.'"
    project = yaml.safe_load((ROOT / "MLproject").read_text())
    entry_point = params["entry_point"] or "main"
    if entry_point not in project["entry_points"]:
        return f"mlflow run: no entry point {entry_point!r} in MLproject"
    spec = project["entry_points"][entry_point]
    values = {name: p.get("default", "") for name, p in spec["parameters"].items()}
    for pair in params["param_list"]:
        name, _, value = pair.partition("=")
        if name not in values:
            return f"mlflow run -e {entry_point}: no parameter {name!r} in MLproject"
        values[name] = value
    command = shlex.split(spec["command"].format(**{k: shlex.quote(str(v)) for k, v in values.items()}))
    assert command[:3] == ["python", "-m", "aetrack"], command
    return click_problem(aetrack_cli, "aetrack", command[3:], strict=True)


def _makefile() -> tuple[set[str], set[str]]:
    text = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w.-]*)\s*:(?!=)", text, re.M))
    variables = set(re.findall(r"^([A-Z_]+)\s*[?:]?=", text, re.M))
    return targets, variables


def make_problem(words: list[str], strict: bool) -> str | None:
    """`make X VAR=value`: X a target, VAR a variable of the Makefile; strict: the recipe `make -n`
    prints for it, and the `mlflow run` in it, check out too."""
    targets, variables = _makefile()
    goals = [w for w in words if "=" not in w and not w.startswith("-")]
    for assignment in (w for w in words if "=" in w):
        if assignment.split("=")[0] not in variables:
            return f"make: no variable {assignment.split('=')[0]} in the Makefile"
    for goal in goals:
        if goal not in targets and goal not in PENDING_TARGETS:
            return f"make: no target {goal!r} in the Makefile"
    if not strict or set(goals) & PENDING_TARGETS:
        return None
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    recipe = subprocess.run(["make", "-n", "-o", ".venv/.installed", *words], cwd=ROOT, env=env,
                            capture_output=True, text=True)
    if recipe.returncode != 0:
        return f"make -n {' '.join(words)}: {recipe.stderr.strip()}"
    for line in recipe.stdout.replace("\\\n", " ").splitlines():
        line_words = shlex.split(line)
        while line_words and re.fullmatch(r"[A-Z_]+=.*", line_words[0]):
            line_words.pop(0)
        if line_words[:2] and line_words[0].endswith("/mlflow") and line_words[1] == "run":
            if problem := command_problem(["mlflow", *line_words[1:]]):
                return f"make {' '.join(words)}: {problem}"
    return None


def command_problem(words: list[str], strict: bool = True) -> str | None:
    """Why a README command is not true of this project (None if it is); other tools pass."""
    if words[:3] == ["python", "-m", "aetrack"]:
        words = ["aetrack", *words[3:]]
    if words[0] == "aetrack":
        return click_problem(aetrack_cli, "aetrack", words[1:], strict)
    if words[0] == "mlflow":
        problem = click_problem(_mlflow_cli(), "mlflow", words[1:], strict)
        return problem or (mlflow_run_problem(words[2:]) if strict and words[1:2] == ["run"] else None)
    if words[0] == "make":
        return make_problem(words[1:], strict)
    return None


@pytest.fixture(scope="module")
def readme(tmp_path_factory) -> str:
    """The README, its `/path/to/x.npz` placeholders pointing at a real small file."""
    from tests.helpers.data import write_npz

    local = write_npz(tmp_path_factory.mktemp("readme") / "mnist.npz", n_train=20, n_test=10)
    return re.sub(r"/path/to/[\w.-]+\.npz", str(local), README.read_text())


def test_every_shell_command_in_the_readme_parses(readme):
    commands = shell_commands(readme)
    checked = [c for c in commands if c[0] in ("aetrack", "mlflow", "make", "python")]
    assert len(checked) >= 10, checked  # the blocks were found
    problems = [f"{' '.join(c)}\n    -> {p}" for c in checked if (p := command_problem(c))]
    assert not problems, "README commands that are not true:\n" + "\n".join(problems)
    shown = {c[0] for c in commands}
    assert {"aetrack", "mlflow", "make"} <= shown


def test_inline_commands_use_real_names(readme):
    commands = inline_commands(readme)
    assert any(c[:2] == ["make", "ui"] for c in commands), commands
    problems = [f"{' '.join(c)} -> {p}" for c in commands if (p := command_problem(c, strict=False))]
    assert not problems, problems


def test_the_checks_catch_what_is_wrong(readme):
    wrong = ["aetrack train basic --dataset digits --no-such-option 1", "aetrack compare --metrics test_bce",
             "aetrack train basic --epochs ten", "aetrack nosuch", "mlflow run . -e basic -P no_such=1",
             "mlflow run . -e nosuch", "mlflow run . -e denoise -P noise_factor=-1", "mlflow ui --nosuch",
             "make nosuch", "make run DATASETS=digits", "make run DATASET=/no/such/file.npz"]
    for line in wrong:
        assert command_problem(shlex.split(line)), line
    assert command_problem(["aetrack", "train", "basic", "--nosuch"], strict=False)
    assert not command_problem(shlex.split("make run DATASET=digits EPOCHS=1"))
    # The blocks are read as a shell would: continuations, comments, pipes, placeholders.
    text = "```bash\nFOO=1 aetrack compare \\\n  --metric test_psnr  # a comment\necho <run id> | aetrack x\n```\n"
    assert shell_commands(text) == [["aetrack", "compare", "--metric", "test_psnr"], ["echo", RUN_ID],
                                    ["aetrack", "x"]]


def test_python_blocks_use_what_aetrack_exports(readme):
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    blocks = [body for language, body in fenced_blocks(readme) if language == "python"]
    assert blocks
    for node in ast.walk(ast.parse("\n".join(blocks))):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "aetrack":
            assert node.attr in aetrack.__all__, f"aetrack.{node.attr} is not exported"
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "TrainConfig":
            assert {k.arg for k in node.keywords} <= fields, ast.unparse(node)


def test_local_links_point_at_files():
    links = re.findall(r"\]\(([^)\s]+)\)", README.read_text())
    local = {link.split("#")[0] for link in links if not re.match(r"[a-z]+:|#", link)}
    assert "docs/vae-samples.png" in local
    missing = {link for link in local if not (ROOT / link).exists()}
    assert missing <= PENDING_PAGES, f"README links to missing files: {sorted(missing - PENDING_PAGES)}"
    # Self-cleaning: once the docs branch has landed, what was pending exists.
    made = {page for page in PENDING_PAGES if (ROOT / page).exists()} | (PENDING_TARGETS & _makefile()[0])
    assert not made, f"now in the project, remove from PENDING_PAGES/PENDING_TARGETS: {sorted(made)}"


def test_results_open_with_todays_figures_each_with_date_and_command():
    """benchmarks/RESULTS.md's first table: one row per figure, each dated, with a machine and a
    command whose script exists and takes the flags shown."""
    head = (ROOT / "benchmarks" / "RESULTS.md").read_text().split("\n## ", 1)[0]
    rows = [[c.strip() for c in line.strip().strip("|").split(" | ")] for line in head.splitlines()
            if line.startswith("| ") and not line.startswith(("| figure", "| ---"))]
    assert len(rows) >= 10, rows
    for figure, value, date, machine, command in rows:
        assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d", date) and "cores" in machine and value, figure
        words = re.fullmatch(r"`(python benchmarks/\S+\.py[^`]*)`", command).group(1).split()
        script = (ROOT / words[1]).read_text()
        for flag in (w.split("=")[0] for w in words[2:] if w.startswith("--")):
            assert f'"{flag}"' in script, f"{words[1]} takes no {flag}"
