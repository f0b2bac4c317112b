"""crosstime: sparse crosscoders over pretraining checkpoints."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # `crosstime.train(data, config)` without importing torch on `import crosstime`
    if name == "train":
        from crosstime.crosscoder import train

        return train
    raise AttributeError(f"module 'crosstime' has no attribute {name!r}")
