"""The command line's core commands, run in-process through main(argv)."""

from __future__ import annotations

import json

from loftup.cli import main


def test_info_lists_every_released_checkpoint(capsys, tmp_path):
    assert main(["info", "--json", str(tmp_path / "info.json")]) == 0
    out = capsys.readouterr().out
    assert "loftup_siglip2" in out and "siglip2_vitb16" in out and "14x14" in out
    rows = json.loads((tmp_path / "info.json").read_text())
    assert len(rows) == 7 and {r["dim"] for r in rows} == {384, 512, 768}


def test_bench_writes_json_with_machine_and_baselines(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert (
        main(
            [
                "bench",
                "--sizes",
                "32",
                "48",
                "--dim",
                "32",
                "--grid",
                "4",
                "--repeats",
                "1",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    methods = {(r["method"], r["size"]) for r in report["results"]}
    assert methods == {(m, s) for m in ("loftup", "bilinear", "bicubic") for s in (32, 48)}
    assert report["machine"]["torch_threads"] >= 1
    assert all(r["median_s"] > 0 for r in report["results"])


def test_user_errors_are_one_line_with_status_2(capsys, tmp_path):
    assert main(["download", "no_such_model"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown name 'no_such_model'")
    assert "loftup_dinov2s" in err and "dinov2_vits14" in err
    assert len(err.strip().splitlines()) == 1
