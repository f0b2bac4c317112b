"""Interop at the run level: import another codebase's crosscoder into a run, export a run's crosscoder
(every format of :mod:`crosstime.interop.formats`: other codebases' files, crosstime's Hub folder,
Neuronpedia from the report's evidence), and push a run's Hub folder to the Hugging Face Hub."""

from crosstime.interop.exporting import ExportConfig, PushConfig, export_info, export_run, push_run
from crosstime.interop.formats.neuronpedia import NeuronpediaError
from crosstime.interop.importing import ImportConfig, InteropError, place_import, read_import, staged_import

__all__ = ["ExportConfig", "ImportConfig", "InteropError", "NeuronpediaError", "PushConfig", "export_info",
           "export_run", "place_import", "push_run", "read_import", "staged_import"]
