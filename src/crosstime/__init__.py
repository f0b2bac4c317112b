"""crosstime: sparse crosscoders over pretraining checkpoints.

``crosstime.open_run(RUN)`` opens a run directory's outputs (:mod:`crosstime.runs`);
``crosstime.train(config)`` trains a crosscoder (:mod:`crosstime.crosscoder`).
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # `crosstime.train(...)`, `crosstime.open_run(...)` without importing torch on `import crosstime`
    if name == "train":
        from crosstime.crosscoder import train

        return train
    if name == "open_run":
        from crosstime.runs import open_run

        return open_run
    raise AttributeError(f"module 'crosstime' has no attribute {name!r}")
