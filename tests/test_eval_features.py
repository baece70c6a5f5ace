"""What a run's numbers rest on: the backbone feature cache's keys (an entry is read again only
for the same image, weights and settings), and the commit its results name."""

import pytest
import torch

import loftup
from loftup.eval.features import FeatureCache


def test_feature_cache_keys_and_round_trip(tmp_path):
    image = tmp_path / "a.jpg"
    image.write_bytes(b"x")
    cache = FeatureCache(tmp_path / "c", backbone="b", weights=None, size=224, policy="p")
    feats = torch.randn(4, 2, 2)
    assert cache.get(str(image)) is None
    cache.put(str(image), feats)
    assert torch.equal(cache.get(str(image)), feats)
    assert not list((tmp_path / "c").rglob("*.tmp"))  # written atomically
    for other in (
        FeatureCache(tmp_path / "c", backbone="b", weights=None, size=448, policy="p"),
        FeatureCache(tmp_path / "c", backbone="b", weights="w", size=224, policy="p"),
        FeatureCache(tmp_path / "c", backbone="b", weights=None, size=224, policy="q"),
        # features loftup now computes otherwise (CLIP's positional embeddings)
        FeatureCache(
            tmp_path / "c", backbone="b", weights=None, size=224, policy="p", revision="r"
        ),
    ):
        assert other.get(str(image)) is None
    image.write_bytes(b"changed")  # a changed image is a new entry
    assert cache.get(str(image)) is None
    cache.put(str(image), feats)
    cache.path(str(image)).write_bytes(b"corrupt")
    assert cache.get(str(image)) is None  # recomputed, not a crash
    assert FeatureCache(None, backbone="b", weights=None, size=1, policy="p").get("x") is None


def test_feature_cache_keys_local_weights_by_their_files(tmp_path, monkeypatch):
    image = tmp_path / "a.jpg"
    image.write_bytes(b"x")
    for run in ("one", "two"):
        (tmp_path / run / "w").mkdir(parents=True)
        (tmp_path / run / "w" / "config.json").write_text("{}")
        (tmp_path / run / "w" / "model.safetensors").write_bytes(b"weights")

    def cache(weights):
        return FeatureCache(tmp_path / "c", backbone="b", weights=weights, size=8, policy="p")

    monkeypatch.chdir(tmp_path / "one")
    feats = torch.randn(4, 2, 2)
    cache("w").put(str(image), feats)
    assert torch.equal(cache("w").get(str(image)), feats)
    assert torch.equal(cache(str(tmp_path / "one" / "w")).get(str(image)), feats)  # same folder
    monkeypatch.chdir(tmp_path / "two")
    assert cache("w").get(str(image)) is None  # the same name, another folder
    monkeypatch.chdir(tmp_path / "one")
    (tmp_path / "one" / "w" / "model.safetensors").write_bytes(b"retrained")
    assert cache("w").get(str(image)) is None  # weights saved again: the old features are stale
    hub = cache("facebook/dinov2-small")  # a hub id: keyed by its name, as before
    assert hub.settings["weights"] == "facebook/dinov2-small"


def test_feature_cache_sees_a_changed_image_whose_path_has_a_hash(tmp_path):
    cache = FeatureCache(tmp_path / "c", backbone="b", weights=None, size=8, policy="p")
    feats = torch.randn(4, 2, 2)
    for key, image in (
        (str(tmp_path / "run#1" / "a.jpg"), tmp_path / "run#1" / "a.jpg"),  # an image file
        (str(tmp_path / "run#1" / "nyu.mat") + "#3", tmp_path / "run#1" / "nyu.mat"),  # an item
    ):
        image.parent.mkdir(exist_ok=True)
        image.write_bytes(b"x")
        cache.put(key, feats)
        assert torch.equal(cache.get(key), feats)
        image.write_bytes(b"changed")
        assert cache.get(key) is None, key  # not the old image's features


def test_git_commit_is_loftups_own_not_that_of_a_repository_around_an_install(
    tmp_path, monkeypatch
):
    """A virtual environment inside a user's git checkout (ignored by it): the results must
    not claim that checkout's commit as loftup's."""
    import os
    import subprocess
    from pathlib import Path

    from loftup.eval import report

    project = tmp_path / "project"
    installed = project / ".venv" / "site" / "loftup" / "eval" / "report.py"
    installed.parent.mkdir(parents=True)
    installed.write_text(Path(report.__file__).read_text())
    (project / ".gitignore").write_text(".venv/\n")
    env = {"GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@b", "GIT_COMMITTER_NAME": "a",
           "GIT_COMMITTER_EMAIL": "a@b", "PATH": os.environ.get("PATH", "")}  # fmt: skip
    for cmd in (["init", "-q"], ["add", ".gitignore"], ["commit", "-qm", "theirs"]):
        subprocess.run(["git", "-C", str(project), *cmd], check=True, env=env)
    ours = report.git_commit()
    monkeypatch.setattr(report, "__file__", str(installed))  # where git_commit looks from
    assert report.git_commit() is None
    here = Path(__file__).resolve().parents[1]
    if (here / ".git").exists() and here in Path(loftup.__file__).resolve().parents:
        assert ours is not None  # run from this checkout: its own commit is found


def test_feature_cache_keys_hub_weights_by_what_was_loaded(tmp_path, monkeypatch):
    """Weights from the hub were keyed by the repo's name alone (None for the official ones),
    so a repo updated upstream (or its cache filled again from another copy) kept giving the
    old weights' cached features: now by the digest the results record, hashed once."""
    from huggingface_hub import constants
    from transformers import Dinov2Config, Dinov2Model

    from hub_builders import make_hf_cache
    from loftup.eval import EvalConfig
    from loftup.eval.pipeline import FeaturePipeline

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    config = Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=28)

    def upload(seed):  # the hub repo's weights, as the cache holds them
        torch.manual_seed(seed)
        Dinov2Model(config).save_pretrained(tmp_path / f"w{seed}")
        files = {p.name: p for p in (tmp_path / f"w{seed}").iterdir()}
        make_hf_cache(tmp_path / "hub", "facebook/dinov2-small", files)

    def pipeline(weights=None, backbone="dinov2_vits14"):
        cfg = EvalConfig(task="seg", dataset="cocostuff", root=".", backbone=backbone,
                         upsampler="bilinear", backbone_weights=weights, size=28,
                         cache_dir=str(tmp_path / "c"))  # fmt: skip
        return FeaturePipeline(cfg, policy="p")

    upload(0)
    first = pipeline()
    digest = first.record()["backbone"]["weights_digest"]
    assert first.cache.settings["weights_digest"] == digest
    assert pipeline().cache.path("x") == first.cache.path("x")  # the same weights: read again
    by_id = pipeline("facebook/dinov2-small")
    assert by_id.cache.settings["weights"] == "facebook/dinov2-small"
    assert by_id.cache.settings["weights_digest"] == digest
    upload(1)  # the repo updated upstream, fetched again
    assert pipeline().cache.path("x") != first.cache.path("x")
    assert pipeline("facebook/dinov2-small").cache.path("x") != by_id.cache.path("x")
    # weights that are no hub's keep their keys: a local folder by its files, none by nothing
    local = pipeline(str(tmp_path / "w1"))
    assert "weights_digest" not in local.cache.settings
    assert "weights_digest" not in pipeline(backbone="dinov2_tiny").cache.settings


@pytest.mark.parametrize("out_size", [28, 42], ids=["own size", "resized"])
def test_the_eval_pipeline_normalises_its_own_copies_in_place_with_the_same_values(out_size):
    """The guide and the backbone input were normalised out of place, each a second tensor of
    its size for the one kept, where the pipeline's own copy (resized, moved, or indexed from
    the batch) could be normalised in place, as loftup.pipeline's are. Now only the caller's
    images at their own size are copied to be normalised; the caller's images are untouched
    and the features the same, bit for bit."""
    import torch.nn.functional as F
    from torch.profiler import ProfilerActivity, profile

    from loftup.baselines import bilinear
    from loftup.eval import EvalConfig
    from loftup.eval.pipeline import FeaturePipeline, guidance_image
    from loftup.featurizers import imagenet_normalize

    cfg = EvalConfig(task="seg", dataset="cocostuff", root=".", backbone="dinov2_tiny",
                     upsampler="bilinear", size=28, cache_dir=None)  # fmt: skip
    pipe = FeaturePipeline(cfg, policy="test")
    images = torch.rand(2, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    before = images.clone()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        lr, hr = pipe(images, ["a", "b"], out_size)
    assert torch.equal(images, before)
    side = pipe.input_size
    sizes = {2 * 3 * n * n * 4 for n in (out_size, side)}  # the guide's, the backbone input's
    made = [e for e in prof.events() if e.name == "aten::sub" and e.cpu_memory_usage in sizes]
    assert len(made) == (out_size == 28), [e.cpu_memory_usage for e in made]

    with torch.no_grad():  # the old way
        backbone_input = (
            images if side == 28 else F.interpolate(images, size=(side, side), mode="bilinear")
        )
        old_lr = pipe.featurizer(pipe.featurizer.normalize(backbone_input)).float()
        old_hr = bilinear(old_lr, imagenet_normalize(guidance_image(images, out_size)))
    assert torch.equal(lr, old_lr) and torch.equal(hr, old_hr.float())


@pytest.mark.parametrize("status", ["exec sleep 30", "exit 128"], ids=["slow", "failing"])
def test_git_commit_with_a_git_status_that_does_not_answer_is_marked_unchecked(
    tmp_path, monkeypatch, status
):
    """``git status`` past its timeout (a huge checkout, one on a network disk) raised
    TimeoutExpired out of git_commit, so eval, bench, demo and train ended in a traceback
    when they recorded how the run was made; then the commit came back bare, a dirty tree
    recorded as a clean commit. It is the commit marked ``-unchecked``, as where status fails."""
    import os

    from loftup.eval import report

    fake = tmp_path / "bin" / "git"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\n"
        f'for a in "$@"; do [ "$a" = status ] && {status}; done\n'
        'for a in "$@"; do [ "$a" = rev-parse ] && echo 0123abc; done\n'
        "exit 0\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(report, "GIT_TIMEOUT", 0.5)  # the fake status never answers
    assert report.git_commit() == "0123abc-unchecked"


def test_a_featurizer_with_its_own_normalize_is_given_its_own_values():
    """The backbone input was normalised with ImageNet's constants in place, whatever the
    featurizer's own normalize said: a registered backbone that normalises its own way was
    given other pixels than it asks for. Its own normalize is kept; the default's values are
    unchanged."""
    from loftup.eval.features import lowres_features
    from loftup.featurizers import Featurizer, imagenet_normalize

    class Seen(Featurizer):
        def forward(self, x):  # the input itself, as features: what it was given
            return x.clone()

    class OwnNorm(Seen):
        def normalize(self, images01):
            return images01 * 2 - 1

    images = torch.rand(2, 3, 14, 14, generator=torch.Generator().manual_seed(0))
    cache = FeatureCache(None, backbone="b", weights=None, size=14, policy="p")
    got = lowres_features(OwnNorm(), images, ["a", "b"], cache, 14)
    assert torch.equal(got, images * 2 - 1)
    got = lowres_features(Seen(), images, ["a", "b"], cache, 14)
    assert torch.equal(got, imagenet_normalize(images))
