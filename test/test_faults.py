"""`make faults` in the suite: bad input, storage faults, concurrent jobs and forget-user
against the real node processes (scripts/faults.py prints each case). The whole set takes
~15 min on 2 cores; the suite runs, in one run (the graphs start once), every input case and,
through `--ci`, one storage, concurrency and privacy case of each kind, and two concurrency
cases against the single-process graph."""
import re
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = [pytest.mark.ros, pytest.mark.real_models, pytest.mark.e2e]


def run_faults(at_least: int, *args: str) -> str:
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "faults.py"), *args],
                         capture_output=True, text=True, timeout=1500)
    print(out.stdout)
    summary = re.search(r"^(\d+) tried, (\d+) survived, (\d+) lost$", out.stdout, re.M)
    assert summary, out.stdout + out.stderr[-3000:]
    tried, survived, lost = map(int, summary.groups())
    assert tried >= at_least and survived == tried and lost == 0, out.stdout
    assert out.returncode == 0
    return out.stdout


def test_every_fault_case_is_survived_and_nothing_is_lost(installed):
    """One run of scripts/faults.py (one start of each graph, ~5 min): every bad-input case,
    then kill -9 mid-training, a tampered checkpoint, two Adapt calls at once, forget-user
    during training (in the four-process and the single-process graph), and forget-user
    leaving nothing on disk nor in an export, audio and recogniser adapters included."""
    out = run_faults(19 + 7, "--groups", "input,storage,concurrency,privacy,concurrency-single",
                     "--ci")
    assert "'abandoned'" in out and "no byte of the store holds" in out
    assert "the single-process graph is up" in out
    assert re.search(r"survived  concurrency-single: forget-user during training", out)
    assert "audio samples or adapter bytes" in out
