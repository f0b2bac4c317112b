"""The one base of every error crosstime raises on purpose.

Each module has its own subclass (``StoreError``, ``CrosscoderError``, ``TaskError``, …) whose
message names the input and the fix. The command line turns any of them into one line,
``error: …``, and exit code 2; anything else is a bug and keeps its traceback.
"""


class CrosstimeError(ValueError):
    """An expected failure: bad input, a damaged or mismatched file; the message says what to do."""
