"""What a benchmark ran on, said the same way by every benchmark: threads, load, ``uptime`` and the CPU model.

    from _machine import machine_line   # a script in benchmarks/ run as `python benchmarks/bench_X.py`
    print(machine_line())               # once at the start; the load again beside each timing: load()

Timings on a shared machine depend on who else is running: every table says the torch threads it
used, the cores the process may use, the load averages and the CPU, so ratios are read against them.
"""

from __future__ import annotations

import os
import platform
import subprocess

import torch

from crosstime.stage import cpu_cores


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), else what the platform says."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except FileNotFoundError:  # not Linux
        pass
    return platform.processor() or platform.machine()


def load() -> str:
    """The 1, 5 and 15 minute load averages, e.g. ``1.21 0.98 0.87``."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def uptime() -> str:
    """``uptime``'s line as the system prints it (its load averages, users, time up)."""
    return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()


def machine_line() -> str:
    """One line: ``threads: 2 of 2 cores; CPU: …; torch …; uptime: …``."""
    return (f"threads: {torch.get_num_threads()} of {cpu_cores()} cores; CPU: {cpu_model()}; torch {torch.__version__}; "
            f"load average {load()}; uptime: {uptime()}")


if __name__ == "__main__":
    print(machine_line())
