r"""Explain every image of a dataset, resumably, in one process or many.

This is the engine of ``captum-regadv explain`` (see :mod:`captum_regadv.cli`);
:func:`run_explain` takes an :class:`ExplainConfig` and returns the exit status.

**Outputs.** Each input gets its outputs under ``OUT``, named by the input's
path relative to the folder common to all inputs (so ``a/x.png`` and
``b/x.png`` never collide) plus a suffix:

* ``<name>.mask.png``: the mask at the image's resolution, 0 or 255;
* ``<name>.overlay.png``: the image in gray, the mask tinted and outlined;
* ``<name>.npz``: ``mask`` (the image's shape, 0/1), ``mask_model``,
  ``input`` and ``perturbed`` (model space, ``C x h x w``), ``target``,
  ``score_before``, ``score_after`` and the APE components
  (``ape_d_sparsity``, ``ape_d_smoothness``, ``ape_d_classification``,
  ``ape_d_total``; ``ape_s_*`` with ``--mode preserve``);
* ``<name>.record.json``: the input's results line, written last.

A 3-D volume (a NIfTI file, a multi-frame DICOM file, or a DICOM series:
a folder holding one, or ``<folder>/series-<SeriesNumber>-<SeriesInstanceUID>``
for each series of a folder holding several) gets
``<name>.mask.nii.gz`` (the mask, 0/1, with the input's affine),
``<name>.slices.png`` (the three orthogonal slices through the mask's
centre, drawn in millimetres, with a colorbar and a legend) and
``<name>.npz`` (as above, plus ``affine`` and the voxel ``spacing``) instead. An input folder named like one of the run's own files
(``summary.json``, ``results.jsonl``) gets ``_`` appended in the outputs.

At the end ``OUT/results.jsonl`` (one line per completed input, in input
order: input, name, outputs relative to ``OUT``, shape, ``spacing`` (mm
per axis, or null), target, scores
before and after, APE components, the forward+backward ``passes`` and
``forward_passes`` spent, ``attempts`` and ``weight_search`` (whether the
weight search re-ran the input), ``mask_fraction`` and ``large_mask``
(more than half of the input), seconds) and ``OUT/summary.json`` are
rebuilt from the records. The summary counts ``inputs``, ``ok`` (explained
by this run), ``skipped`` (complete from an earlier run), ``failed`` and
``complete``, gives ``mean_ape_d`` (``mean_ape_s`` with ``--mode
preserve``) over the complete inputs, the
``failures`` with their reasons, the totals ``passes``, ``forward_passes``,
``weight_searches`` and ``large_masks`` over the complete inputs, and the
settings.

**Nothing is lost.** Every file is written atomically (temporary file in the
same folder, ``fsync``, ``os.replace``), and an input is done only once its
record exists, which is written after its other outputs. A run killed at any
moment leaves complete files only; rerunning the same command skips the
inputs whose record matches the settings (a record made with other settings
is redone; the settings include the torch version, device, dtype, CPU
thread count and batch size, which change masks in the last bits) and
finishes the rest. A run locks its output folder (``fcntl.flock`` on
``OUT/.captum-regadv.lock``): a second run on the same folder stops at
setup with exit status 2, so no run deletes another's files. A failed
setup leaves no new output folder behind. Unreadable inputs (and FIFOs, devices, sockets, which are never opened)
are reported, skipped,
and make the exit status 1; a bad model, device or output folder stops the
run before any work with exit status 2.

**Scaling out.** Under ``torchrun`` (the variables ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` are set) every process takes the slice ``inputs[rank::world]``
of the sorted input list, on ``cuda:LOCAL_RANK`` with NCCL (or the CPU with
gloo when ``--device cpu`` or no GPU), writes its own per-input outputs,
waits for the others, and rank 0 writes ``results.jsonl`` and
``summary.json`` for all inputs: the same files as a single-process run.
One machine with 4 GPUs::

    torchrun --standalone --nproc-per-node 4 -m captum_regadv.cli explain \
        --model model.pt --out results/ data/

CPU processes instead of GPUs (gloo)::

    torchrun --standalone --nproc-per-node 8 -m captum_regadv.cli explain \
        --device cpu --model model.pt --out results/ data/

Two machines with 4 GPUs each; ``OUT`` and the inputs must be on a file
system both machines see under the same paths. Run on each machine, with
``--node-rank 0`` on ``host0`` and ``--node-rank 1`` on the other::

    torchrun --nnodes 2 --node-rank 0 --nproc-per-node 4 \
        --master-addr host0 --master-port 29500 \
        -m captum_regadv.cli explain --model model.pt --out /shared/results /shared/data

or with rendezvous (the same command on every machine)::

    torchrun --nnodes 2 --nproc-per-node 4 --rdzv-id regadv-1 \
        --rdzv-backend c10d --rdzv-endpoint host0:29500 \
        -m captum_regadv.cli explain --model model.pt --out /shared/results /shared/data

``torchrun`` is ``python -m torch.distributed.run``. A killed distributed
run resumes like a single one, with any number of processes.
"""

from __future__ import annotations

from .dataset import ExplainConfig, SetupError, Target, load_model, output_names, run_explain

__all__ = ["ExplainConfig", "SetupError", "Target", "load_model", "output_names", "run_explain"]
