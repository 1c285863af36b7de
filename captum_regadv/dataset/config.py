"""What a run was asked to do, the names of its files, and its setup error."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Optional, Union

from ..fileio import Preprocessing
from ..scores import Score

__all__ = ["ExplainConfig", "SetupError", "Target", "one_line"]

Target = Union[int, Literal["predicted"]]

RESULTS_FILE = "results.jsonl"
SUMMARY_FILE = "summary.json"
LOCK_FILE = ".captum-regadv.lock"
# Names of the folder's own files: no input's outputs may take them.
RESERVED = (RESULTS_FILE, SUMMARY_FILE, LOCK_FILE)
MASK_SUFFIX = ".mask.png"
OVERLAY_SUFFIX = ".overlay.png"
VOLUME_MASK_SUFFIX = ".mask.nii.gz"
SLICES_SUFFIX = ".slices.png"
NPZ_SUFFIX = ".npz"
RECORD_SUFFIX = ".record.json"
COMPONENTS = ("sparsity", "smoothness", "classification", "total")


class SetupError(Exception):
    """A problem found before any work (model, device, inputs, output folder).

    ``report`` is false on the processes of a distributed run that should
    stay silent because rank 0 reports the error.
    """

    def __init__(self, message: str, *, report: bool = True) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class ExplainConfig:
    """Everything ``captum-regadv explain`` was asked to do.

    Attributes:
        inputs: image files and folders.
        out: output folder (created if needed).
        model: a TorchScript file, a ``torch.export`` ``.pt2`` file, or
            ``package.module:factory`` returning an ``nn.Module``.
        target: a class index, or ``"predicted"`` (the model's top class).
        preprocessing: how images become model inputs; its ``dtype`` is
            replaced by the model's parameter type.
        method: keyword arguments for ``RegularizedAdversarial.attribute``
            (only those the user set; the library's defaults apply otherwise).
        score: how the model's output becomes the class score (see
            :data:`captum_regadv.scores.SCORES`); ``"auto"`` (default) decides
            from the output, as the library does.
        batch_size: inputs of equal size explained in one ``attribute`` call.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``; ``None`` = cuda if
            available. Under torchrun a CUDA device is ``cuda:LOCAL_RANK``.
        progress: show a progress bar and a final line (rank 0).
        threads: CPU threads of this process (``torch.set_num_threads``);
            ``None`` keeps torch's default. One thread is often fastest for
            small images or on a busy machine.
        weights: a state dict file loaded into a ``package.module:factory``
            model (``torch.save(model.state_dict(), path)``).
        preprocess: ``package.module:factory`` returning the model's own
            preprocessing transform (e.g. a ``monai.transforms.Compose``);
            it becomes ``preprocessing.transform``.
    """

    inputs: tuple[str, ...]
    out: str
    model: str
    target: Target = "predicted"
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    method: Mapping[str, Any] = field(default_factory=dict)
    score: Score = "auto"
    batch_size: int = 1
    device: Optional[str] = None
    progress: bool = True
    threads: Optional[int] = None
    weights: Optional[str] = None
    preprocess: Optional[str] = None


def one_line(err: BaseException) -> str:
    """The most telling line of an error (TorchScript errors span many lines)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    named = [line for line in lines if re.match(r"^[A-Za-z_.]*(Error|Exception): ", line)]
    text = named[-1] if named else (lines[0] if lines else "")
    if not text:
        return type(err).__name__
    return text if named else f"{type(err).__name__}: {text}"
