"""The scan stage: accuracy curves, representation similarity and training dynamics over a series."""

from crosstime.scan.stage import *  # noqa: F401,F403
from crosstime.scan.stage import __all__  # noqa: F401
