"""``loftup info`` (the released checkpoints, which are cached) and ``loftup download`` (fill
the Hugging Face cache for offline use)."""

from __future__ import annotations

import sys

from .common import say, say_lines, write_json


def add_info(sub) -> None:
    p = sub.add_parser("info", help="list the released checkpoints and which are cached")
    p.add_argument(
        "--json", metavar="OUT", help="also write the list as JSON to OUT ('-' for stdout)"
    )
    p.set_defaults(func=_cmd_info)


def _cmd_info(args) -> int:
    from .. import __version__
    from ..hub import released_table

    rows = released_table()
    print(f"loftup {__version__}: released upsamplers (grid = low-res grid at 224 px)")
    print(
        f"{'name':<20} {'backbone':<19} {'C':>4} {'grid':>6}  {'cached':<14}  hub files "
        "(upsampler; backbone)"
    )
    for r in rows:
        hub = r["backbone_hub"]
        names = [f.removeprefix(f"{hub}/") for f in r["backbone_files"]]
        say_lines(
            f"{r['name']:<20} {r['backbone']:<19} {r['dim']:>4} {r['grid']:>6}  "
            f"{_cached(r):<14}  {r['hub']}; {f'{hub}: ' + ', '.join(names) if hub else '-'}"
        )
    part = [
        r["name"]
        for r in rows
        if r["cached"] is False and r["upsampler_cached"] != r["backbone_cached"]
    ]
    if part:  # an offline run of these fails on the part not cached
        print(
            f"an offline run needs the upsampler and its backbone's files: `loftup download "
            f"{' '.join(part)}` fetches what is missing of {', '.join(part)}"
        )
    for why in dict.fromkeys(r["unchecked"] for r in rows if r["unchecked"]):  # one a folder
        names = [r["name"] for r in rows if r["unchecked"] == why]
        which = "any of them is" if len(names) == len(rows) else f"{', '.join(names)} is"
        say(
            f"warning: cannot tell whether {which} cached (?): the Hugging Face cache: {why}",
            file=sys.stderr,
        )
    if args.json:
        write_json(args.json, rows)
    return 0


def _cached(row: dict) -> str:
    """The ``cached`` column of a row of :func:`~loftup.hub.released_table`: "yes" only where
    an offline run finds all it reads (the upsampler and its backbone's files), else what the
    cache holds of the two; "?" where that cannot be told."""
    if row["cached"] is None:
        return "?"
    if row["cached"]:
        return "yes"
    up, down = row["upsampler_cached"], row["backbone_cached"]
    return "upsampler only" if up else "backbone only" if down else "no"


def add_download(sub) -> None:
    p = sub.add_parser("download", help="fill the Hugging Face cache for offline use")
    p.add_argument(
        "names",
        nargs="+",
        metavar="NAME",
        help="released upsampler names (their backbones come too), backbone names, SAM for "
        "training's masks (sam_vit_base, sam_vit_large, sam_vit_huge), another hub id ORG/NAME "
        "(an upsampler save_pretrained wrote, at ORG/NAME@REVISION too; a backbone's weights "
        "of your own; or SAM's: its config.json says which), or 'all'",
    )
    p.add_argument(
        "--no-backbone", action="store_true", help="upsamplers only, not their backbones"
    )
    p.set_defaults(func=_cmd_download)


def _cmd_download(args) -> int:
    from ..downloads import download_names

    for name, path in download_names(args.names, backbones=not args.no_backbone):
        say(f"{name}: {path}")
    return 0
