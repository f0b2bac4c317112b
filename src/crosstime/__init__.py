"""crosstime: sparse crosscoders over pretraining checkpoints.

``crosstime.open_run(RUN)`` opens a run directory's outputs (:mod:`crosstime.runs`);
``crosstime.train(config)`` trains a crosscoder (:mod:`crosstime.stages.train`).
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # `crosstime.train(...)`, `crosstime.open_run(...)` without importing torch on `import crosstime`
    if name == "train":
        from crosstime.stages.train import train  # lazy: start-up time (torch)

        return train
    if name == "open_run":
        import crosstime.stages  # noqa: F401  lazy: start-up time; registers the stages, whose declarations name the commands in its messages
        from crosstime.runs import open_run  # lazy: start-up time

        return open_run
    raise AttributeError(f"module 'crosstime' has no attribute {name!r}")
