"""Progress bars fit for a terminal and for a log file: one owner, :class:`Bar` (a tqdm).

On a terminal (the bar's stream is a TTY) a bar is tqdm's, redrawn in place. Written to a file or
a pipe (a log), it is a plain line when it starts, every :data:`LOG_EVERY_S` seconds, and when it
finishes: no carriage returns. :func:`end_line` ends a terminal bar's line, so that an error printed
while a bar is drawn starts its own line.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from tqdm import tqdm

LOG_EVERY_S = 30.0  # a log gets one line per bar this often (and at its start and end)


def _is_tty(stream: TextIO) -> bool:
    return stream.isatty()


class Bar(tqdm):
    """A tqdm progress bar (same arguments); on a stream that is not a TTY, a line every LOG_EVERY_S."""

    def __init__(self, *args: Any, file: TextIO | None = None, **kwargs: Any):
        file = file if file is not None else sys.stderr
        self.for_log = not _is_tty(file)
        if self.for_log:  # no redraws: whole lines, not too often, in plain characters
            kwargs.update(mininterval=LOG_EVERY_S, maxinterval=LOG_EVERY_S, ascii=True, dynamic_ncols=False)
        super().__init__(*args, file=file, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if not self.for_log:
            return super().display(msg, pos)
        if msg == "":  # tqdm clears a terminal line here: a log keeps its lines
            return False
        self.fp.write(str(self) + "\n")
        self.fp.flush()
        return True

    def close(self) -> None:
        if self.for_log and not self.disable:
            self.display()  # the final line
            self.leave = False  # tqdm would write it again
        super().close()


def end_line(stream: TextIO | None = None) -> None:
    """End the line a live terminal bar is drawn on (its cursor stays at its end), so what is written
    next to ``stream`` (default stderr) starts a line of its own."""
    stream = stream if stream is not None else sys.stderr
    live = [bar for bar in list(tqdm._instances) if not bar.disable]  # every tqdm, ours and the libraries'
    if live and _is_tty(stream):
        stream.write("\n")
        stream.flush()
