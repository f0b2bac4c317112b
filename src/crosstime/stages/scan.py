"""The scan stage, declared: a checkpoint series -> RUN/scan/ (accuracy curves, similarity, dynamics,
phases, the suggested checkpoints).

    from crosstime.stages.scan import ScanConfig, scan
    result = scan(ScanConfig(run="runs/toy", series="toy", layer=0))

The work is :mod:`crosstime.scan` (its stage module says what is measured and written).
"""

from __future__ import annotations

import time

from crosstime import stage
from crosstime.runs import SCAN
from crosstime.scan import ScanConfig, ScanResult, prepare, print_scan_summary
from crosstime.scan.work import work
from crosstime.stage import Stage

__all__ = ["SCAN_STAGE", "ScanConfig", "scan"]


def scan(config: ScanConfig) -> ScanResult:
    """Run the scan stage. Inputs are checked before any model is loaded; the settings are recorded
    in ``RUN/config.yaml`` once every file is written."""
    started = time.perf_counter()
    inputs = prepare(config)
    with stage.writing(config):
        return work(config, inputs, started)


def show(result: ScanResult, config: ScanConfig) -> None:
    print_scan_summary(result)


SCAN_STAGE = stage.register(Stage(
    name="scan", config=ScanConfig, work=scan, writes=(SCAN,), positional=("run", "series"), show=show,
    help="Scan every checkpoint: task accuracy, representation similarity, training dynamics; the phases in order "
         "of onset; suggest checkpoints."))
