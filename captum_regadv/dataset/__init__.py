"""The engine of ``captum-regadv explain``, along its seams.

* :mod:`.config`: the run's configuration, file names and setup error;
* :mod:`.world`: devices and the torchrun process group;
* :mod:`.models`: loading the user's model;
* :mod:`.setup`: every pre-flight check and the settings fingerprint;
* :mod:`.outdir`: creating and locking the output folder;
* :mod:`.naming`: where each input's outputs go;
* :mod:`.explain`: explaining one batch; :mod:`.records`: writing its outputs;
* :mod:`.loop`: the run loop and the summary.

:mod:`captum_regadv.dataset_run` documents the whole and re-exports the
public names.
"""

from __future__ import annotations

from .config import ExplainConfig, SetupError, Target
from .loop import run_explain
from .models import load_model
from .naming import output_names

__all__ = ["ExplainConfig", "SetupError", "Target", "load_model", "output_names", "run_explain"]
