"""`make faults` in the suite: bad audio and hostile messages against the real node processes,
every case survived and no good utterance lost (scripts/faults.py prints each case)."""
import re
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = [pytest.mark.ros, pytest.mark.real_models, pytest.mark.e2e]


def test_every_fault_case_is_survived_and_nothing_is_lost(installed):
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "faults.py")],
                         capture_output=True, text=True, timeout=1200)
    print(out.stdout)
    summary = re.search(r"^(\d+) tried, (\d+) survived, (\d+) lost$", out.stdout, re.M)
    assert summary, out.stdout + out.stderr[-3000:]
    tried, survived, lost = map(int, summary.groups())
    assert tried >= 19 and survived == tried and lost == 0, out.stdout
    assert out.returncode == 0
