"""What a run checks before it loads anything (:func:`preflight`): every config value, the
backbone's name against the sizes it needs, the global batch against torchrun's processes,
stage 2's ``init``, the data folder and the output folder. A :class:`UsageError` names the
problem and the fix."""

from __future__ import annotations

import os
from pathlib import Path

from ..data.dataset import check_global_batch, data_folder
from ..errors import UsageError
from ..paths import check_folder_output, check_visible
from .build import Init, given_model_keys, init_architecture, read_init, stage2_architecture
from .checkpoint import CHECKPOINT_NAME, has_checkpoint
from .config import TrainConfig, check_backbone_fit, validate
from .distributed import DistInfo, broadcast_object, dist_timeout, env_world
from .earlier import OUT_OPTION


def preflight(
    cfg: TrainConfig, resume: bool = False, another: str = OUT_OPTION, inside=None
) -> Init | None:
    """What can be checked without loading anything, checked first: every config value (again:
    a TrainConfig may have been changed after it was built), the backbone's name against the
    sizes it needs, the global batch against torchrun's process count, stage 2's ``init``
    (unless a checkpoint to resume holds the run) and the ``model.*`` keys set against its
    architecture, the data folder and the output folder. A :class:`UsageError` names the
    problem and the fix (``another``: the option that chose the output folder, as the command
    running this takes it; ``inside``: the folder given as it, where the run's folder is one
    the command makes in it, :func:`check_out_dir`).

    Returns stage 2's ``init`` where it had to be read (``model.*`` keys to check against it),
    for the run to start from without reading it again; else None."""
    validate(cfg)
    check_backbone_fit(cfg)
    check_global_batch(cfg.batch_size, env_world())  # under torchrun, before joining the group
    if env_world() > 1:
        dist_timeout()  # LOFTUP_DIST_TIMEOUT, read as the group is joined
    # one in a folder not searchable is no checkpoint (check_out_dir says why); a link to
    # nothing is refused (a missing init was said instead, or it was trained over)
    ckpt = Path(cfg.log.out_dir).expanduser() / CHECKPOINT_NAME
    resuming = resume and has_checkpoint(ckpt, another)
    init = None
    if cfg.stage == 2 and not resuming:
        check_init(cfg.init)
        if given_model_keys(cfg) - {"attention_window"}:  # read init's config, not the backbone
            init = read_init(cfg.init)
            stage2_architecture(cfg, init_architecture(init), f"init {cfg.init}")
    check_out_dir(cfg.log.out_dir, another, inside)
    check_backbone_weights(cfg.backbone, cfg.backbone_weights)
    data_folder(cfg.data.root)
    return init


def check_backbone_weights(backbone: str, weights: str | None) -> None:
    """``backbone_weights`` that name a file, or a path that does not exist: every backbone
    reads a folder (or a hub id, looked up when it loads)."""
    from ..hub import looks_like_path

    if not weights:
        return
    from ..featurizers.hf_weights import _a_hub_id

    path = Path(weights).expanduser()
    if not _a_hub_id(weights):  # a hub id is looked for here first, but is no path to check
        check_visible(path, f"backbone weights for {backbone}:")
    if os.path.isfile(path):  # os.path: pathlib's raises where the folder is not searchable
        raise UsageError(
            f"backbone weights for {backbone}: {weights} is a file, but they must be a folder or "
            f"a hub id (if it is one of its files, pass its folder, {path.parent})"
        )
    if os.path.exists(path):
        return
    from ..featurizers.hf_weights import refuse_revision

    # ORG/NAME@refs/pr/1: a revision, whose slashes read as a path
    refuse_revision(str(weights), backbone, "the folder of its weights")
    if looks_like_path(weights):
        raise UsageError(
            f"backbone weights for {backbone}: {weights} does not exist; pass the folder of its "
            "weights or a hub id"
        )


def check_init(init: str | None) -> None:
    """Stage 2's ``init``: set, and what :func:`~loftup.hub.load_upsampler` takes (it reads
    it): a file or folder here, a released name, or a hub id ``ORG/NAME[@REVISION]`` of an
    upsampler of one's own (looked up in the cache, or downloaded, when it is read)."""
    from ..hub import RELEASED
    from ..hub.checks import upsampler_name

    if not init:
        raise UsageError(
            "stage 2 starts from a stage-1 result: set init=RUN/checkpoint.pt (or RUN/final, "
            "a released name such as loftup_dinov2s, or the hub id ORG/NAME of an upsampler of "
            "your own)"
        )
    if upsampler_name(init):  # a released name or hub id, no path: whatever the current folder
        return
    check_visible(init, "init")
    if not os.path.exists(os.path.expanduser(init)):
        raise UsageError(
            f"init {init} does not exist; stage 2 starts from a stage-1 result (RUN/checkpoint.pt "
            f"or RUN/final), a released name ({', '.join(RELEASED)}) or the hub id "
            "ORG/NAME[@REVISION] of an upsampler save_pretrained wrote"
        )


def check_out_dir(out_dir: str, another: str = OUT_OPTION, inside=None) -> Path:
    """``log.out_dir`` as a Path, or a UsageError if it (or a folder above it) is a file, or
    if no file can be made there (a read-only disk, no permission): said before the models,
    the data and SAM's masks load, rather than when the first file is written. ``another``:
    the option that chose it (a demo's or an experiment's --out: a folder of runs in it);
    ``inside``: the folder given as that option, where ``out_dir`` is a run folder the command
    makes in it (``OUT/runs/stage2``), named as the user typed it, not as if given as
    ``another``. Nothing is written (a file made to see that files can be made is removed)."""
    path = Path(out_dir).expanduser()
    for p in (path, *path.parents):  # os.path: in a folder not searchable, said below
        if not os.path.exists(p):
            continue
        if os.path.isdir(p):
            break
        what = f"{path} is a file" if p == path else f"{path} lies under {p}, which is a file"
        named, fix = "--out, log.out_dir", "give a folder path"
        if another != OUT_OPTION:  # the run's folder is one the command makes in its own
            named, fix = another, f"move it away or choose another {another}"
        if inside is not None:
            named = f"a run folder this command makes in {another} {inside}"
        raise UsageError(
            f"{what}, but a run's output ({named}) is a folder that will hold checkpoint.pt, "
            f"final/ and metrics.csv; {fix}"
        )
    if env_world() == 1:  # under torchrun: once the ranks can agree (check_out_dir_writable)
        check_folder_output(out_dir, another, inside=inside)  # now, not after SAM's masks
    return path


def check_out_dir_writable(
    out_dir: str, info: DistInfo, another: str = OUT_OPTION, inside=None
) -> None:
    """Under torchrun, just after joining the process group: whether rank 0, which writes the
    run's files, can write ``out_dir``, said by every rank (a :class:`UsageError`). Checked
    before the group is joined, a rank 0 that stopped there left the others waiting for it at
    the rendezvous (for its time-out, under a launcher that does not stop them)."""
    if not info.enabled:
        return  # checked by the preflight
    problem = None
    if info.is_main:
        try:
            check_folder_output(out_dir, another, inside=inside)
        except UsageError as e:
            problem = str(e)
    problem = broadcast_object(problem, info)
    if problem is not None:
        raise UsageError(problem)


def packages_needed(cfg: TrainConfig) -> dict[str, str]:
    """The optional packages this run will import, and what for (loftup.errors.require)."""
    from .loader import masks_matter

    needs = {"yaml": "loftup train (its run record)", "PIL": "loftup train (reading images)"}
    masks = cfg.data.masks if masks_matter(cfg) else None  # None: not read or made (ImagesAlone)
    if masks == "sa1b":
        needs["pycocotools"] = "data.masks=sa1b (SA-1B's RLE masks)"
    elif masks == "superpixels":
        needs["skimage"] = "data.masks=superpixels"
    if cfg.log.viz_every:
        needs["matplotlib"] = "log.viz_every (its PNG grids; log.viz_every=0 draws none)"
    if cfg.log.tensorboard:
        needs["tensorboard"] = "log.tensorboard (log.tensorboard=false writes none)"
    return needs
