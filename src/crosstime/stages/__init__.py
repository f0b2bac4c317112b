"""The stages, declared: one module per stage, each registering a :class:`~crosstime.stage.Stage`
(config, the artifacts it reads, the artifacts it writes, its command) in pipeline order.

    scan -> harvest -> train (or import) -> evaluate -> attribute -> interpret -> report

Importing this package registers them all (the CLI and ``crosstime.open_run`` do). A stage of
your own is one module that builds a ``Stage`` and calls :func:`crosstime.stage.register`; the
command line, the run reader and the records then know it. No stage module imports another
(import-linter); what they share is below them: the artifacts (:mod:`crosstime.runs`) and the
libraries that do the work.
"""

# pipeline order (the order of `crosstime --help`), then import: another way to fill RUN/crosscoder
from crosstime.stages import scan, harvest, train, evaluate, attribute, interpret, report, import_  # noqa: F401,I001
