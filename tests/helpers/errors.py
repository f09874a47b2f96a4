"""The one-line error contract: every failure ends with a single `aetrack: error: ...` line."""

from __future__ import annotations

import subprocess


def error_line(out: subprocess.CompletedProcess, exit_code: int | None = 2, only_line: bool = False) -> str:
    """The one `aetrack: error:` line on stderr, after checking the exit code and that no traceback
    was printed. `only_line`: stderr holds nothing else (commands that never load TensorFlow, whose
    own start-up logging could otherwise add lines)."""
    if exit_code is not None:
        assert out.returncode == exit_code, f"exit {out.returncode}, expected {exit_code}:\n{out.stderr[-3000:]}"
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    lines = [line for line in out.stderr.splitlines() if line.startswith("aetrack:")]
    assert len(lines) == 1, out.stderr[-3000:]
    if only_line:
        assert out.stderr.strip().splitlines() == lines, out.stderr[-3000:]
    assert lines[0].startswith("aetrack: error: "), lines[0]
    return lines[0]
