"""The command line turns an operating-system error into one line and exit status 2, and a
plot never writes through a link planted in the run folder (issue 24 items 4 and 5)."""
import subprocess
import sys
from pathlib import Path

import pytest

from minigpt.runfolder import write_metrics
from minigpt.training import plot_losses

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "minigpt", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


@pytest.mark.parametrize("command", ["sample", "trace", "explore"])
def test_a_300_character_checkpoint_name_is_one_line_not_a_traceback(tmp_path, command):
    r = run_cli(command, "--ckpt", tmp_path / ("a" * 300), cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"minigpt {command}: error:"), r.stderr
    assert len(lines[0]) < 200   # the name is cut, not printed whole


def test_the_loss_plot_replaces_a_link_instead_of_writing_through_it(tmp_path):
    pytest.importorskip("matplotlib")
    precious = tmp_path / "precious.txt"
    precious.write_text("the user's own file\n")
    run = tmp_path / "run"
    run.mkdir()
    write_metrics(run / "metrics.jsonl", [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.5}])
    (run / "loss.png").symlink_to(precious)
    assert plot_losses(run) == run / "loss.png"
    assert precious.read_text() == "the user's own file\n"
    assert not (run / "loss.png").is_symlink()
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
