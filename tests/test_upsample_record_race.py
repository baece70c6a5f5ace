"""``loftup upsample``'s record, ``upsample.json``, where another run writes its own while this
one loads its models (seconds to minutes): checked again, under the record lock, against the
record as it is then, not overwritten unseen."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from loftup.cli import main
from loftup.extract import OPTIONS_NAME


def _setup(photos, upsampler, tmp_path):
    Image.open(photos / "astronaut.png").crop((0, 0, 35, 28)).save(tmp_path / "a.png")
    out = tmp_path / "out"
    args = ["upsample", str(tmp_path / "a.png"), "-m", str(upsampler), "-o", str(out)]
    return out, [*args, "--backbone-size", "28", "--no-progress"]


def _another_run_while_loading(monkeypatch, capsys, other_args) -> list:
    """Makes the next run's model loading run ``loftup upsample other_args`` first (another
    run started meanwhile, which writes its record and ends), then load; returns the log the
    other run's exit status and stderr go to."""
    import loftup.api as api

    real, log = api.load_pipeline, []

    def loading(*a, **k):
        if not log:  # (not the other run's own loading)
            log.append("started")
            log[0] = main(other_args)
            log.append(capsys.readouterr().err)
        return real(*a, **k)

    monkeypatch.setattr(api, "load_pipeline", loading)
    return log


def test_a_run_of_other_options_that_wrote_its_record_meanwhile_refuses_this_one(
    photos, upsampler, tmp_path, capsys, monkeypatch
):
    """Two runs of other options started at once both read no record, then both wrote theirs:
    both ended with status 0, their files mixed under the record of the last. The one that
    writes its record second sees the other's now, and is refused as a run of other options."""
    out, args = _setup(photos, upsampler, tmp_path)
    log = _another_run_while_loading(monkeypatch, capsys, [*args, "--size", "64"])
    assert main([*args, "--size", "32"]) == 2
    err = capsys.readouterr().err
    assert log[0] == 0, log[1]
    assert f"another run began writing in {out} while this one loaded its models" in err, err
    assert "--size 64 there, 32 now" in err, err
    record = json.loads((out / OPTIONS_NAME).read_text())
    assert record["size"] == 64 and record["finished"] is True
    assert torch.load(out / "a.pt").shape[-2:] == (64, 80)  # the other run's alone (35 x 28)


def test_a_run_of_another_format_that_wrote_its_record_meanwhile_stays_in_it(
    photos, upsampler, tmp_path, capsys, monkeypatch
):
    """A run of another --format that wrote its record while this one loaded its models was
    left out of the record this one wrote (its kind of output too): a rerun of it was then
    refused, its own .npy files called not loftup's. Both kinds are recorded now."""
    out, args = _setup(photos, upsampler, tmp_path)
    log = _another_run_while_loading(monkeypatch, capsys, [*args, "--format", "npy"])
    assert main(args) == 0, capsys.readouterr().err
    assert log[0] == 0, log[1]
    record = json.loads((out / OPTIONS_NAME).read_text())
    assert record["outputs"] == ["npy", "pt"] and record["format"] == "pt"
    monkeypatch.undo()
    for again in (args, [*args, "--format", "npy"]):
        assert main(again) == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["a.npy", "a.pt", OPTIONS_NAME]


def test_a_run_that_read_no_record_does_not_finish_the_record_of_one_writing_meanwhile(
    photos, upsampler, tmp_path, monkeypatch
):
    """Two runs of the same options: the second read no record as it began, then the first
    wrote its own and went on to its images; the second, ending first, marked finished the
    record (its own, written over the first's) of a run still writing, which a run of other
    options could then replace. It sees the first's unfinished record as it writes its own
    now, and leaves it unfinished; the first, ending last, marks it finished."""
    import threading

    import loftup.api as api
    import loftup.extract as extract
    from loftup.extract import upsample_folder

    out, args = _setup(photos, upsampler, tmp_path)
    real_load, real_run = api.load_pipeline, extract.run
    second_loading, first_wrote = threading.Event(), threading.Event()
    seen = {}

    def second():
        report = upsample_folder(
            tmp_path / "a.png", out, model=str(upsampler), backbone_size=28, progress=False
        )
        seen["second"] = (report.done, report.failed)

    other = threading.Thread(target=second, name="second")

    def loading(*a, **k):
        if threading.current_thread() is other:  # it has read no record
            second_loading.set()
            assert first_wrote.wait(60)
        else:
            assert second_loading.wait(60)
        return real_load(*a, **k)

    def running(*a, **k):
        if threading.current_thread() is not other:  # the first, its record written
            first_wrote.set()
            other.join(60)
            seen["record"] = json.loads((out / OPTIONS_NAME).read_text())
        return real_run(*a, **k)

    monkeypatch.setattr(api, "load_pipeline", loading)
    monkeypatch.setattr(extract, "run", running)
    other.start()
    assert main(args) == 0
    assert seen["second"] == (1, 0) and "finished" not in seen["record"], seen
    # the first, the last of the two to end, marks it (neither did: the record stayed
    # unfinished, and a later run of other options, the outputs deleted, was refused)
    record = json.loads((out / OPTIONS_NAME).read_text())
    assert (record["finished"], record["written"], record["running"]) == (True, 1, []), record


def test_a_run_refused_over_a_record_written_meanwhile_is_not_told_to_remove_it(
    photos, upsampler, tmp_path, capsys, monkeypatch
):
    """Refused because another run of other options began writing while this one loaded, it
    was told "if no run is writing there, remove upsample.json": one is."""
    import loftup.api as api

    out, args = _setup(photos, upsampler, tmp_path)
    real, started = api.load_pipeline, []

    def loading(*a, **k):  # the other run as it is on its first image: record, no output yet
        if not started:
            started.append(1)
            assert main([*args, "--size", "64"]) == 0
            record = json.loads((out / OPTIONS_NAME).read_text())
            del record["finished"], record["written"]
            (out / OPTIONS_NAME).write_text(json.dumps(record))
            (out / "a.pt").unlink()
        return real(*a, **k)

    monkeypatch.setattr(api, "load_pipeline", loading)
    assert main([*args, "--size", "32"]) == 2
    err = capsys.readouterr().err
    assert f"another run began writing in {out} while this one loaded its models" in err, err
    assert "remove" not in err and err.rstrip().endswith("or another -o"), err


def test_a_run_refused_over_a_record_written_meanwhile_leaves_its_loftup_as_it_was(
    photos, upsampler, tmp_path, capsys, monkeypatch
):
    """Another run of other options wrote its record while this one read its models: this one
    was refused only after load_pipeline had converted the LoftUp passed in (float32 to
    float16, in place, lossily) for a run that did nothing. Refused before it now."""
    import loftup
    import loftup.extract.folder as folder
    from loftup.extract import upsample_folder

    out, args = _setup(photos, upsampler, tmp_path)
    real, started = folder.read_models, []

    def reading(*a, **k):  # the other run, started and ended while this one reads
        if not started:  # (not the other run's own reading)
            started.append(1)
            assert main([*args, "--size", "64"]) == 0
        return real(*a, **k)

    monkeypatch.setattr(folder, "read_models", reading)
    model = loftup.load_upsampler(upsampler)
    with pytest.raises(loftup.LoftUpError, match="another run began writing in .* while this"):
        upsample_folder(tmp_path / "a.png", out, model=model, backbone_size=28, size=32,
                        dtype="float16", progress=False)  # fmt: skip
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert json.loads((out / OPTIONS_NAME).read_text())["size"] == 64
