"""One source for each fact of the training config: the ``model`` section is LoftUpConfig's
fields (every one a YAML key with the same default and bounds, reaching the upsampler a run
builds), and the checks' rules name keys that exist."""

import dataclasses
import typing

import pytest
import yaml

from loftup.errors import UsageError
from loftup.model_config import NULLABLE, LoftUpConfig, integer_bounds
from loftup.train.build import build_upsampler
from loftup.train.config import ModelConfig, load_config

FROM_BACKBONE = ("dim",)  # the one LoftUpConfig field a run takes from its backbone


def _other_value(f: dataclasses.Field):
    """A valid value of LoftUpConfig field ``f`` other than its default."""
    least = integer_bounds().get(f.name)
    if isinstance(f.default, bool):
        return not f.default
    if least is not None:
        return least + 2 if f.name in NULLABLE else f.default + 1
    raise AssertionError(f"no test value for the new LoftUpConfig field {f.name}: add one here")


def test_model_section_has_every_architecture_field_with_its_default():
    arch = [f for f in dataclasses.fields(LoftUpConfig) if f.name not in FROM_BACKBONE]
    assert [(f.name, f.default) for f in dataclasses.fields(ModelConfig)] == [
        (f.name, f.default) for f in arch
    ]
    assert load_config({}).model == ModelConfig()


def test_every_architecture_field_set_in_yaml_reaches_the_built_upsampler(tmp_path):
    """A field added to LoftUpConfig but not settable from the YAML, or set but not passed on
    to the upsampler stage 1 builds, fails here."""
    values = {
        f.name: _other_value(f)
        for f in dataclasses.fields(LoftUpConfig)
        if f.name not in FROM_BACKBONE
    }
    path = tmp_path / "arch.yaml"
    path.write_text(yaml.safe_dump({"stage": 1, "model": values}))
    cfg = load_config(str(path))
    assert dataclasses.asdict(cfg.model) == values
    # a width the chosen heads divide: dim + 4 * grid_freqs
    dim = next(
        d for d in range(8, 100) if (d + 4 * values["grid_freqs"]) % values["num_heads"] == 0
    )
    model, used, _ = build_upsampler(cfg, dim)
    assert model.config.to_dict() == {"dim": dim, **values}
    assert used.model == cfg.model
    assert LoftUpConfig.from_dict(model.config.to_dict()) == model.config  # as saved, read back
    # the same values through key=value overrides
    pairs = [f"model.{k}={yaml.safe_dump(v).splitlines()[0]}" for k, v in values.items()]
    assert load_config({}, pairs).model == cfg.model


@pytest.mark.parametrize("name", sorted(set(integer_bounds()) - set(FROM_BACKBONE)))
def test_the_yaml_and_the_upsampler_refuse_the_same_values(name):
    least = integer_bounds()[name]
    assert getattr(load_config({}, [f"model.{name}={least}"]).model, name) == least
    with pytest.raises(UsageError, match=f"config key model.{name} must be an integer >= {least}"):
        load_config({}, [f"model.{name}={least - 1}"])
    with pytest.raises(UsageError, match=f"LoftUp config {name} must be an integer >= {least}"):
        LoftUpConfig(**{name: least - 1})


def test_configs_saved_before_the_model_section_was_derived_still_load():
    """Checkpoints carry LoftUpConfig.to_dict() and TrainConfig.to_dict(): the same keys."""
    saved_arch = {"dim": 384, "depth": 2, "num_heads": 4, "n_freqs": 20, "grid_freqs": 5,
                  "mlp_dim": 384, "coords": True, "attention_window": None}  # fmt: skip
    assert LoftUpConfig.from_dict(saved_arch).to_dict() == saved_arch
    saved_model = {"depth": 1, "num_heads": 2, "n_freqs": 4, "grid_freqs": 5, "mlp_dim": None,
                   "coords": False, "attention_window": 3}  # fmt: skip
    cfg = load_config({"model": saved_model})
    assert dataclasses.asdict(cfg.model) == saved_model
    assert load_config(cfg.to_dict()).to_dict() == cfg.to_dict()


def test_dim_is_not_a_model_key_it_comes_from_the_backbone():
    with pytest.raises(UsageError, match="unknown config key model.dim; known keys here: depth"):
        load_config({}, ["model.dim=64"])


def test_every_rule_of_the_checks_names_a_key_and_every_number_has_a_range():
    """A key renamed or removed in the schema but not in RANGES/CHOICES/NOT_EMPTY would leave
    its rule unused without a word; a numeric key added without a range would take any value
    (negative sizes, zero steps) until something far from the config failed."""
    from loftup.train.config import CHOICES, NOT_EMPTY, RANGES, TrainConfig
    from loftup.train.config.checks import _leaves

    leaves = {key: hint for key, _, _, hint in _leaves(TrainConfig())}
    assert set(RANGES) | set(CHOICES) | set(NOT_EMPTY) <= set(leaves)
    numeric = {k for k, hint in leaves.items() if {int, float} & _types_in(hint)}
    assert "optim.lr" in numeric and "data.superpixels" in numeric and "model.depth" in numeric
    assert numeric - set(RANGES) == {"stage"}  # stage: 1 or 2, checked on its own


def _types_in(hint) -> set:
    """The plain types a type hint is made of: ``list[int] | None`` -> {list, int, NoneType}."""
    args = typing.get_args(hint)
    return {hint}.union(*map(_types_in, args)) if args else {hint}


def test_a_stage_one_config_as_printed_or_saved_starts_stage_two_from_its_result(tmp_path):
    """A stage-1 run's config (its config.yaml, or --print-config) holds ``mlp_dim: null``,
    which LoftUpConfig resolves to dim: stage 2 on that run's result, with that config, was
    refused ("model.mlp_dim=null contradicts init, which has model.mlp_dim=384")."""
    from loftup.hub import save_pretrained
    from loftup.model import LoftUp
    from loftup.train.build import with_init_architecture

    arch = {"depth": 1, "num_heads": 2, "n_freqs": 4}
    printed = load_config({}, [f"model.{k}={v}" for k, v in arch.items()]).to_dict()
    assert printed["model"]["mlp_dim"] is None
    for mlp_dim, refused in ((None, False), (32, False), (4, True)):  # dim 32: small and quick
        init = tmp_path / f"init_{mlp_dim}"
        save_pretrained(LoftUp(dim=32, mlp_dim=mlp_dim, **arch), init, backbone="dinov2_tiny")
        cfg = load_config({**printed, "stage": 2, "init": str(init)}, stage=2)
        if refused:  # null is dim (32), not this init's 4
            with pytest.raises(UsageError, match="model.mlp_dim=null contradicts init .*=4:"):
                with_init_architecture(cfg)
        else:
            assert with_init_architecture(cfg).model.mlp_dim == 32


def test_a_backbone_declaring_another_width_than_it_gives_is_exported_at_its_real_width(
    sa1b, tmp_path, monkeypatch
):
    """A registered backbone whose declared dim (384) is not what its builder gives (dinov2_tiny's
    32): the run trains on the builder's features, then its export refused the pairing by the
    declared width, after the whole run: no final/, no summary.json. The export trusts the
    width the run's featurizer gave; the result loads and runs on that backbone."""
    import json

    import loftup
    from loftup import featurizers
    from loftup.train import train
    from train_fixtures import tiny_config

    spec = dataclasses.replace(featurizers.resolve("dinov2_tiny"), name="my_vit", dim=384)
    monkeypatch.setitem(featurizers.FEATURIZERS, "my_vit", spec)
    result = train(tiny_config(sa1b, tmp_path / "run", 1, 1, "backbone=my_vit"))
    assert (tmp_path / "run" / "summary.json").is_file()
    record = json.loads((result.pretrained / "config.json").read_text())
    assert record["backbone"] == "my_vit" and record["config"]["dim"] == 32
    assert "backbone_weights_dim" not in record  # its own weights give that width
    pipeline = loftup.load_pipeline(result.pretrained)
    assert pipeline.featurizer.dim == pipeline.upsampler.dim == 32
