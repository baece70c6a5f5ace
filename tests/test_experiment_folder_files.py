"""`loftup experiment` run folders whose config.yaml or summary.json cannot be read: a damaged
config.yaml refuses its folder in the up-front check, named with the others, and one this user
may not read is said with the fix (chmod), before any training; a summary.json is not read (its
presence marks the run finished), so a damaged one leaves the run reused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from loftup.errors import LoftUpError
from test_experiment_reads import finished_design

STAGE1 = Path("seed1", "stage1", "stage1")
#: the stage-2 runs of seed 1 that start from its stage-1 run
FROM_IT = [Path("seed1", name, "stage2") for name in ("both", "crops-released", "full-image")]


def test_a_finished_run_whose_summary_cannot_be_read_is_reused(tmp_path):
    """Seed 1's shared stage-1 run with its summary.json cut short: the up-front check passed,
    seed 0 trained and evaluated, then seed 1 was refused, "delete that folder", which named
    none of the stage-2 runs from it (refused at the next start: three starts). The summary is
    not read now: the run is reused as it was."""
    runs, start, seeds = finished_design(tmp_path)
    (runs / STAGE1 / "summary.json").write_text('{"seconds": 3')
    checkpoint = (runs / STAGE1 / "checkpoint.pt").read_bytes()
    results = start()
    assert len(results) == 3 * seeds
    for (seed, _), done in results.items():
        assert done["stage1"].checkpoint.parent == runs / f"seed{seed}" / "stage1" / "stage1"
    assert (runs / STAGE1 / "checkpoint.pt").read_bytes() == checkpoint  # reused as it was


@pytest.mark.parametrize("summary", ['{"seconds": 3', "[]", '{"seconds": "n/a"}', "{}"])
def test_a_finished_run_is_reused_whatever_its_summary_holds(tmp_path, summary):
    """``run_stage`` without the up-front check (a caller of run_variant) reuses the run too."""
    import yaml

    from loftup.experiments import ExperimentSettings
    from loftup.experiments.runs import Variant, run_stage, stage_configs
    from loftup.train.checkpoint import FORMAT, pack_history
    from loftup.train.config import load_config

    s = ExperimentSettings("coords", stage1_steps=2).resolved()
    one, _ = stage_configs(s, Variant("a"), 0, tmp_path / "train", tmp_path / "runs")
    out = Path(one["log"]["out_dir"])
    (out / "final").mkdir(parents=True)
    (out / "summary.json").write_text(summary)
    (out / "config.yaml").write_text(yaml.safe_dump(load_config(one).to_dict()))
    history = pack_history([{"step": 1, "loss": 1.0}])
    torch.save({"format": FORMAT, "step": 2, "history": history}, out / "checkpoint.pt")
    result = run_stage(one)
    assert result.pretrained == out / "final" and result.history == [{"step": 1, "loss": 1.0}]


def _more_steps(folder: Path) -> None:
    """The run in ``folder`` taken to more steps than asked for: refused too."""
    raw = torch.load(folder / "checkpoint.pt")
    torch.save({**raw, "step": raw["step"] + 1}, folder / "checkpoint.pt")


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("lr: [0.1", "line 1, column 9: expected ',' or ']', but got '<stream end>'"),
        ("- a\n- b\n", "it holds a list, not settings"),  # 'list' has no attribute 'get'
        ("", "it holds no settings"),  # "differs in backbone, backbone_norm, ... stage2"
        ("null", "it holds no settings"),
        (None, None),  # gone: "config.yaml: No such file or directory", no fix
    ],
)
def test_a_config_that_cannot_be_read_refuses_its_folder_named_with_the_others(
    tmp_path, text, said
):
    """A damaged, empty or missing config.yaml of a finished run stopped the up-front check at
    that folder, with a traceback or a misleading refusal, the other refused folders unnamed."""
    runs, start, _ = finished_design(tmp_path)
    config = runs / STAGE1 / "config.yaml"
    if text is None:
        config.unlink()
        why = "holds a finished run whose config.yaml is gone (moved away or deleted)"
    else:
        config.write_text(text)
        why = f"holds a config.yaml that cannot be read ({said})"
    other = runs / "seed0" / "both" / "stage2"
    _more_steps(other)
    with pytest.raises(LoftUpError) as e:
        start()
    message = str(e.value)
    assert message.startswith("2 run folders cannot be reused or gone on with: ")
    assert f"{runs / STAGE1} {why}" in message
    assert f"{other} holds a run of " in message
    also = ", ".join(str(runs / f) for f in FROM_IT)
    assert message.endswith(f"delete those folders and those of the runs that start from them "
                            f"({also})")  # fmt: skip


def test_a_stage2_config_whose_model_is_no_mapping_differs_in_its_window(tmp_path):
    """A stage-2 run's model section read for its attention window: a number there was an
    AttributeError's traceback."""
    import yaml

    runs, start, _ = finished_design(tmp_path)
    folder = runs / FROM_IT[0]
    saved = yaml.safe_load((folder / "config.yaml").read_text())
    (folder / "config.yaml").write_text(yaml.safe_dump({**saved, "model": 5}))
    with pytest.raises(LoftUpError, match=r"other settings \(differs in model.attention_window\)"):
        start()


def test_a_config_this_user_may_not_read_is_said_with_the_fix_up_front(tmp_path):
    """A config.yaml of mode 000 gave a bare PermissionError; now it is refused in the
    up-front check, with the chmod (or another --out). A summary.json of mode 000 passes it
    (it is not read)."""
    from file_modes import where_modes_apply

    runs, _, _ = finished_design(tmp_path)
    summary, config = runs / STAGE1 / "summary.json", runs / FROM_IT[1] / "config.yaml"
    said = where_modes_apply(f"""
import os
from file_modes import told
from loftup.experiments import ExperimentSettings
from loftup.experiments.begun import check_begun
from loftup.experiments.designs import DESIGNS
s = ExperimentSettings("distill-view", quick=True, out={str(runs.parent)!r}, progress=False)
s = s.resolved()
variants, result = DESIGNS["distill-view"](s).variants, []
inputs = {{"backbone_sha256": None, "training_data": {{}}}}
for path in ({str(summary)!r}, {str(config)!r}):
    os.chmod(path, 0)
    result.append(told(lambda: check_begun(s, variants, {str(tmp_path / "data")!r},
                                           {str(runs)!r}, inputs)))
    os.chmod(path, 0o644)
""")
    assert said[0] == "none"
    assert said[1].startswith(f"PathPermissionError: cannot read run config {config}: permission "
                              "denied (mode ----------")  # fmt: skip
    assert said[1].endswith(f"make it readable: chmod u+r {config}; or choose another --out")
    assert "delete" not in said[1]


def test_a_record_this_user_may_not_read_is_said_with_the_fix_not_a_deletion(tmp_path):
    """An init.json or inputs.json of mode 000 was "cannot be read ([Errno 13] Permission
    denied ...); choose another --out or delete that folder"."""
    from file_modes import where_modes_apply

    record = tmp_path / "run" / "init.json"
    record.parent.mkdir()
    record.write_text(json.dumps({"stage1_steps": 2}))
    said = where_modes_apply(f"""
import os
from file_modes import told
from loftup.experiments.run_folders import _read
os.chmod({str(record)!r}, 0)
result = told(lambda: _read({str(record)!r}))
""")
    assert said.startswith(f"PathPermissionError: cannot read run record {record}: permission")
    assert said.endswith(f"chmod u+r {record}; or choose another --out")  # (not "delete")
