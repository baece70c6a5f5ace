"""What a pipeline tracks of where its two models run, and in what, between its calls: a model
moved or converted alone warned of once, a joint move followed, a replaced model let go
(src/loftup/pipeline_placement.py)."""

from __future__ import annotations

import pytest
import torch

import loftup


@pytest.fixture(autouse=True)
def _half_precision_emulation_said(monkeypatch):
    """A CPU that emulates bfloat16 (or float16) warns once per process, whichever test runs
    first: taken as said, so that these tests meet only the placement warnings they look for
    (run alone on such a CPU, two of them failed on that warning)."""
    from loftup import cpu

    monkeypatch.setattr(cpu, "_WARNED_EMULATED", {torch.bfloat16, torch.float16})


def test_a_module_shared_with_a_pipeline_converted_since_is_said_once():
    """p1 = load_pipeline(m); load_pipeline(m, dtype="bfloat16") converted p1's upsampler in
    place, its featurizer not: p1's features moved without a word. Said once, by the module
    that changed; both models moved together (the caller's choice) say nothing."""
    import warnings

    torch.manual_seed(0)
    m, image = loftup.LoftUp(dim=32), torch.rand(1, 3, 28, 28)
    p1 = loftup.load_pipeline(m, backbone="dinov2_tiny", device="cpu", backbone_size=28)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p1(image)
        loftup.load_pipeline(m, backbone="dinov2_tiny", dtype="bfloat16", backbone_size=28)
        with pytest.warns(UserWarning, match=r"^pipeline\.upsampler was float32 on cpu when the "
                          r"pipeline was built and is now bfloat16 on cpu, and pipeline\.featurizer \(float32 on cpu\) was not "
                          r"changed with it: .* where it is shared with another pipeline, by that "
                          r"one's load_pipeline"):  # fmt: skip
            assert p1(image)[1].dtype == torch.bfloat16
        p1(image)  # once
        p1.featurizer.to(torch.bfloat16)
        p2 = loftup.load_pipeline(loftup.LoftUp(dim=32), backbone="dinov2_tiny", backbone_size=28)
        p1(image), p2.upsampler.to(torch.bfloat16), p2.featurizer.to(torch.bfloat16), p2(image)
        # the caller's own .half() of one model: said as what happened, not blamed on another
        p3 = loftup.load_pipeline(loftup.LoftUp(dim=32), backbone="dinov2_tiny", backbone_size=28)
        p3.upsampler.half()
        told = (
            r"^pipeline\.upsampler was float32 on cpu when the pipeline was built and is now "
            r"float16 on cpu, .*It was "
            r"moved or converted in place: by a call on it \(pipeline\.upsampler\.half\(\)"
        )
        with pytest.warns(UserWarning, match=told):
            p3(image)


def test_a_model_moved_alone_after_both_moved_together_is_said():
    """Both models moved to bfloat16 together said nothing, rightly, but the pipeline went on
    comparing with float32, as built: the upsampler then converted alone to float16 (both
    differing from float32) was never said. A joint move is what a lone one is told against;
    a lone move undone and made again is said again."""
    import warnings

    torch.manual_seed(0)
    image = torch.rand(1, 3, 28, 28)
    pipe = loftup.load_pipeline(loftup.LoftUp(dim=32), backbone="dinov2_tiny", backbone_size=28)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pipe.upsampler.to(torch.bfloat16), pipe.featurizer.to(torch.bfloat16), pipe(image)
        for _ in range(2):
            pipe.upsampler.to(torch.float16)
            with pytest.warns(UserWarning, match=r"^pipeline\.upsampler was bfloat16 on cpu when "
                              r"both models were last changed together and is now float16 on "
                              r"cpu, and pipeline\.featurizer \(bfloat16 on cpu\) "
                              r"was not changed"):  # fmt: skip
                pipe(image)
            pipe(image)  # once
            pipe.upsampler.to(torch.bfloat16), pipe(image)


def test_a_lone_move_after_a_joint_one_is_not_told_as_the_placement_built():
    """Built float32, the upsampler converted to float16 alone (said), then the featurizer too
    (both changed: the new placement followed), then the upsampler put back to float32 alone:
    told "was float16 on cpu and is now float32", read as built float16. Said as what is true:
    float16 since both models were changed together."""
    import warnings

    image = torch.rand(1, 3, 28, 28)
    pipe = loftup.load_pipeline(loftup.LoftUp(dim=32), backbone="dinov2_tiny", backbone_size=28)
    pipe.upsampler.half()
    with pytest.warns(UserWarning, match=r"^pipeline\.upsampler was float32 on cpu when the "
                      r"pipeline was built and is now float16 on cpu, "):  # fmt: skip
        pipe(image)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pipe.featurizer.half(), pipe(image)
    pipe.upsampler.float()
    with pytest.warns(UserWarning, match=r"^pipeline\.upsampler was float16 on cpu when both "
                      r"models were last changed together and is now float32 on cpu, and "
                      r"pipeline\.featurizer \(float16 on cpu\) was not changed"):  # fmt: skip
        pipe(image)


@pytest.mark.parametrize("ran", [True, False])
def test_a_model_replaced_by_one_in_another_dtype_is_said_replaced(ran):
    """pipeline.upsampler = a float16 LoftUp (the caller's choice, before or after a call)
    was told "was float32 ... and is now float16" and blamed on a module converted in place
    or shared with another pipeline. Said as replaced, with how to match the models; the new
    module converted in place alone afterwards is said as that."""
    import warnings

    image = torch.rand(1, 3, 28, 28)
    pipe = loftup.load_pipeline(loftup.LoftUp(dim=32), backbone="dinov2_tiny", backbone_size=28)
    if ran:
        pipe(image)
    pipe.upsampler = loftup.LoftUp(dim=32).eval().half()
    with pytest.warns(UserWarning) as told:
        pipe(image)
    (said,) = [str(w.message) for w in told]
    assert said.startswith(
        "pipeline.upsampler was replaced by a module in float16 on cpu while pipeline.featurizer "
        "is float32 on cpu; the upsampler was float32 on cpu when the pipeline was built"
    ), said
    assert "pipeline.upsampler.to('cpu', torch.float32)" in said and "shared" not in said
    with warnings.catch_warnings():  # back as built: silent, and the next change is new
        warnings.simplefilter("error")
        pipe.upsampler.float(), pipe(image)
    pipe.upsampler.to(torch.bfloat16)
    with pytest.warns(UserWarning, match=r"^pipeline\.upsampler was float32 on cpu when the "
                      r"pipeline was built and is now bfloat16 on cpu, .*moved or converted in "
                      r"place"):  # fmt: skip
        pipe(image)


def test_both_models_of_a_pipeline_converted_by_another_load_pipeline_are_said_there():
    """p2 = load_pipeline(up, backbone=feat, dtype="bfloat16") of p1's two modules converted
    both in place: p1 then ran in bfloat16 without a word (a joint move, which p1 cannot tell
    from its caller's own). Said by the load that did it, at the caller's line, once; not
    where no other pipeline holds both (dropped, or its upsampler replaced), nor for the
    caller's own joint move; a pipeline copied (or unpickled) counts too."""
    import copy
    import warnings

    torch.manual_seed(0)
    up, feat = loftup.LoftUp(dim=32), loftup.get_featurizer("dinov2_tiny")
    image = torch.rand(1, 3, 28, 28)
    p1 = loftup.load_pipeline(up, backbone=feat, backbone_size=28)
    p1(image)
    told = (
        r"^the upsampler and the backbone passed in were moved or converted in place by "
        r"dtype=/device= from float32 on cpu to bfloat16 on cpu, and they are both models of "
        r"another FeaturePipeline built earlier, which now runs in bfloat16 on cpu too, .*"
        r"pass copies: load_pipeline\(copy\.deepcopy\(model\), backbone=copy\.deepcopy"
    )
    with pytest.warns(UserWarning, match=told) as said:
        p2 = loftup.load_pipeline(up, backbone=feat, dtype="bfloat16", backbone_size=28)
    assert [w.filename for w in said] == [__file__]
    with pytest.warns(UserWarning, match=r"^the upsampler and the backbone passed in .* to "
                      r"float16 on cpu, .* both models of 2 other pipelines built earlier, which "
                      r"now run in float16 on cpu too, without a warning of their") as said:  # fmt: skip
        loftup.upsample(image[0], model=up, backbone=feat, dtype="float16", backbone_size=28)
    assert [w.filename for w in said] == [__file__]  # upsample's caller too
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert p1(image)[1].dtype == torch.float16  # said once, where it happened
        p1.upsampler.float(), p1.featurizer.float(), p1(image)  # the caller's joint move
        p1.upsampler = loftup.LoftUp(dim=32).eval()
        del p2
        loftup.load_pipeline(up, backbone=feat, dtype="bfloat16", backbone_size=28)
    p3 = copy.deepcopy(p1)  # (not built by __init__: a live pipeline still)
    with pytest.warns(UserWarning, match=r"^the upsampler and the backbone passed in .* \(the "
                      r"upsampler from float32 on cpu to float16 on cpu, the backbone from "
                      r"bfloat16 on cpu to float16 on cpu\), and they are both models of another "
                      r"FeaturePipeline"):  # fmt: skip
        loftup.load_pipeline(p3.upsampler, backbone=p3.featurizer, dtype="float16")


def test_a_replaced_model_is_not_kept_alive_by_the_pipeline():
    """The pipeline remembered the models it last found clear of the meta device: one
    replaced (pipeline.upsampler = other) stayed alive, its memory (a GPU's) held, until
    the next call. The pipeline pickles still (torch.save, a worker's copy)."""
    import gc
    import pickle
    import weakref

    pipe = loftup.load_pipeline(loftup.LoftUp(dim=32), backbone="dinov2_tiny", backbone_size=28)
    pipe(torch.rand(1, 3, 28, 28))
    old = weakref.ref(pipe.upsampler)
    pipe.upsampler = loftup.LoftUp(dim=32).eval()
    gc.collect()
    assert old() is None
    pipe(torch.rand(1, 3, 28, 28))
    pickle.dumps(pipe)  # (a weakref cannot be pickled: left out, looked for again once loaded)
    assert pickle.loads(pickle.dumps(pipe._placed)).clear is None


@pytest.mark.parametrize("change", ["moved", "replaced"])
def test_a_lone_change_is_said_at_the_line_of_upsample_given_the_pipeline(change):
    """loftup.upsample(image, model=pipe) of a pipeline whose upsampler was converted alone
    (or replaced by one in another dtype) warned at upsample's own line in loftup/api.py (a
    fixed stacklevel of the pipeline's frames), not at the caller's; called directly, it
    points at the caller too."""
    image = torch.rand(1, 3, 28, 28)
    pipe = loftup.load_pipeline(loftup.LoftUp(dim=32), backbone="dinov2_tiny", backbone_size=28)
    if change == "moved":
        pipe.upsampler.half()
    else:
        pipe.upsampler = loftup.LoftUp(dim=32).eval().half()
    said = "float32 on cpu when" if change == "moved" else "replaced by a module in float16"
    with pytest.warns(UserWarning, match=rf"^pipeline\.upsampler was {said}") as told:
        loftup.upsample(image[0], model=pipe)
    assert [w.filename for w in told] == [__file__]
    pipe.upsampler.float()
    pipe(image)  # back as built: the next lone change is new
    pipe.upsampler.to(torch.bfloat16)
    with pytest.warns(UserWarning, match=r"^pipeline\.upsampler was") as told:
        pipe(image)
    assert [w.filename for w in told] == [__file__]


def test_a_pipeline_built_while_the_live_ones_are_looked_through_is_no_error():
    """load_pipeline looked through the live pipelines (a WeakValueDictionary's values(), run
    in Python item by item) while another thread could build one: "RuntimeError: dictionary
    changed size during iteration" out of load_pipeline (seen in a threaded run). Here the
    other thread's build happens, deterministically, as a live pipeline's upsampler is read."""
    from loftup.pipeline import FeaturePipeline

    built, armed = [], []

    class BuildsOneWhenRead(FeaturePipeline):
        @property
        def upsampler(self):
            if armed and not built:  # "another thread" builds a pipeline meanwhile
                built.append(FeaturePipeline(self.__dict__["_up"], self.featurizer, 28))
            return self.__dict__["_up"]

        @upsampler.setter
        def upsampler(self, module):
            self.__dict__["_up"] = module

    up, feat = loftup.LoftUp(dim=32), loftup.get_featurizer("dinov2_tiny")
    keep = [BuildsOneWhenRead(up, feat, 28), *(FeaturePipeline(up, feat, 28) for _ in range(3))]
    armed.append(True)
    with pytest.warns(UserWarning, match=r"both models of 4 other pipelines"):
        loftup.load_pipeline(up, backbone=feat, dtype="bfloat16", backbone_size=28)
    assert built and keep
