"""Images in and out for the command line (kept for compatibility).

Everything lives in :mod:`captum_regadv.fileio` (readers, volumes,
preprocessing, atomic writing); this module re-exports its public names.
"""

from __future__ import annotations

from .fileio import *  # noqa: F401,F403
from .fileio import __all__ as __all__  # noqa: F401
