"""The command line as a Unix tool: output piped to a reader that stops early ends quietly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TRAINWISE = str(Path(sys.executable).with_name("trainwise"))


@pytest.mark.parametrize("argv", [["config", "--explain"], ["config"]], ids=["long output", "short output"])
def test_a_closed_pipe_ends_the_verb_without_a_traceback(argv):
    """`trainwise config --explain | head`: the reader is gone before the first write (long output
    fails mid-print, short output at the final flush); both end with 141 (128 + SIGPIPE), quietly."""
    p = subprocess.Popen([TRAINWISE, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 141, err
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_head_gets_its_lines():
    out = subprocess.run(
        f"set -o pipefail; {TRAINWISE} config --explain | head -n 3",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert len(out.stdout.splitlines()) == 3 and "Traceback" not in out.stderr, out.stderr
