"""``loftup upsample`` at scale: inputs to jobs, jobs to ranks, features to files.

One process:

    loftup upsample photos/ -m loftup_dinov2s -o feats/ --size 448 --viz

Several (one GPU each, or CPU processes over gloo), same files as one process writes:

    torchrun --nproc_per_node 4 -m loftup upsample photos/ -m loftup_dinov2s -o feats/

The sorted input list is cut into batches exactly as one process would cut it, and batch i goes
to rank i % world_size: every image is computed in the same company on every run, so the bytes
of every file are the same whatever the number of processes.

An interrupted run goes on with ``--resume``: the output folder's ``upsample.json`` records
the options that change the files' bytes, a resumed run must have the same, and it skips each
batch whose outputs are all there (files are put in place whole, so one that exists is
complete); a batch with any output missing is computed again, whole, giving the same bytes.

The package, by step: :mod:`.inputs` (files, folders and globs to jobs), :mod:`.record` (the
output folder's ``upsample.json``), :mod:`.output_files` (which of its files are loftup's),
:mod:`.torchrun` (batches to ranks, the process group), :mod:`.meeting` (where a torchrun job's processes meet
before joining it), :mod:`.claims` (each rank's claim at that meeting), :mod:`.point` (the
meeting point, as the network sees it), :mod:`.pulse` (from the meeting into the group),
:mod:`.join` (the group's own join: its waits, what its failure says), :mod:`.globs` (a glob's matches and what it could not see), :mod:`.loop` (:func:`run`),
:mod:`.resumed` (what ``--resume`` keeps of a rank's batches), :mod:`.write` (one image's files),
:mod:`.run_options` and :mod:`.run_models` (a run's options checked, its models loaded and how
its record names them), :mod:`.settle` (the record a run goes on from, settled before its models are converted) and :mod:`.folder` (:func:`upsample_folder`: one whole run, as the command makes it). Every name is importable from ``loftup.extract`` as before.
"""

from __future__ import annotations

from ..ranks import dist_env
from .folder import FolderReport, check_run_options, upsample_folder
from .inputs import Job, collect_inputs
from .loop import STREAM_ABOVE, Report, _no_memory, run
from .output_files import outputs_of, recorded_outputs, without_own_pictures
from .record import (
    OPTIONS_NAME,
    check_clobbering,
    check_options,
    mark_finished,
    read_record,
    recorded_path,
    remove_unfinished,
    stale_record,
    weights_digest,
    write_options,
)
from .torchrun import barrier, init_distributed, process_group, shard, summed
from .writers import running_entries

__all__ = [
    "FolderReport",
    "OPTIONS_NAME",
    "STREAM_ABOVE",
    "Job",
    "Report",
    "_no_memory",
    "barrier",
    "check_clobbering",
    "check_run_options",
    "check_options",
    "collect_inputs",
    "dist_env",
    "init_distributed",
    "mark_finished",
    "running_entries",
    "outputs_of",
    "process_group",
    "read_record",
    "recorded_outputs",
    "recorded_path",
    "remove_unfinished",
    "run",
    "stale_record",
    "shard",
    "summed",
    "upsample_folder",
    "weights_digest",
    "without_own_pictures",
    "write_options",
]
