"""flint: calibrate and image ASKAP-style radio-interferometer data.

The core library: plain functions, one module per pipeline stage, typed options in
and typed results out. Importing ``flint`` is cheap; stages import their heavy
dependencies when called. The core never imports Prefect or Jupyter
(``flint.prefect`` and ``flint_widgets`` sit on top of it).
"""

from flint.errors import (
    FlintCommandError,
    FlintError,
    FlintInputError,
    FlintMSError,
    FlintOptionsError,
)
from flint.ms import MS, summarise

__version__ = "0.1.0"

__all__ = [
    "FlintError",
    "FlintInputError",
    "FlintMSError",
    "FlintOptionsError",
    "FlintCommandError",
    "MS",
    "summarise",
    "__version__",
]
