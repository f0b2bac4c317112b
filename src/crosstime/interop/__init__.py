"""Interop at the run level: import another codebase's crosscoder into a run, export a run's crosscoder
(every format of :mod:`crosstime.crosscoder.formats`, plus Neuronpedia from the report's evidence),
and push a run's Hub folder to the Hugging Face Hub."""

from crosstime.interop.exporting import NEURONPEDIA, export_formats, export_info, export_run, push_run
from crosstime.interop.importing import ImportConfig, InteropError, read_import, write_import
from crosstime.interop.neuronpedia import NeuronpediaError, write_neuronpedia

__all__ = ["NEURONPEDIA", "ImportConfig", "InteropError", "NeuronpediaError", "export_formats", "export_info",
           "export_run", "push_run", "read_import", "write_import", "write_neuronpedia"]
