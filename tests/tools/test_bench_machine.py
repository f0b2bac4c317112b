"""benchmarks/_machine.py: the line every benchmark prints about the machine it ran on (#26 item 6)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from script_loader import load_script


def _helper():
    return load_script("benchmarks/_machine.py", "_machine")


def test_the_machine_line_says_threads_cores_cpu_and_load():
    machine = _helper()
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        line = machine.machine_line()
    finally:
        torch.set_num_threads(before)
    assert line.startswith(f"threads: 1 of {len(os.sched_getaffinity(0))} cores; ")
    names = re.findall(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
    assert f"CPU: {names[0].strip()};" in line
    assert f"torch {torch.__version__};" in line
    loads = re.search(r"load average (\S+) (\S+) (\S+); uptime: .*load average", line)
    assert loads and all(float(x) >= 0 for x in loads.groups()), line
