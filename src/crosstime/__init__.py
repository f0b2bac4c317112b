"""crosstime: sparse crosscoders over pretraining checkpoints."""

__version__ = "0.1.0"
