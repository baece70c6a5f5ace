"""CUDA paths: the same function on the GPU. Run wherever a CUDA device is present (also in the
default suite), skipped with the reason elsewhere. Self-contained: no fixtures from ../shared,
which does not travel to a lent GPU machine."""

from __future__ import annotations

import copy
import gc

import pytest
import torch

from loftup.bench.core import tf32
from loftup.tiling import upsample
from model_helpers import perturbed_loftup

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device (none visible to torch)"
)


@pytest.fixture(scope="module")
def model():
    return perturbed_loftup()


def _inputs(size=224, batch=1, grid=16):
    g = torch.Generator().manual_seed(2)
    return torch.randn(batch, 384, grid, grid, generator=g), torch.randn(
        batch, 3, size, size, generator=g
    )


@pytest.fixture(scope="module")
def cpu_out(model):
    lr, image = _inputs()
    with torch.inference_mode():
        return model(lr, image)


def test_float32_on_gpu_matches_cpu(model, cpu_out):
    lr, image = _inputs()
    gpu = copy.deepcopy(model).cuda()
    with torch.inference_mode(), tf32(False):
        out = gpu(lr.cuda(), image.cuda()).cpu()
    assert (out - cpu_out).abs().max().item() <= 1e-4


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_on_gpu_is_close(model, cpu_out, dtype):
    lr, image = _inputs()
    gpu = copy.deepcopy(model).cuda().to(dtype)
    with torch.inference_mode():
        out = gpu(lr.cuda(), image.cuda())
    assert out.dtype == dtype
    dev = (out.float().cpu() - cpu_out).abs()
    assert dev.mean().item() <= 0.02 and torch.isfinite(out).all()


def test_tiles_and_host_streaming_match_whole_output(model):
    lr, image = _inputs(size=640)
    gpu = copy.deepcopy(model).cuda()
    lr, image = lr.cuda(), image.cuda()
    with torch.inference_mode(), tf32(False):
        whole = upsample(gpu, lr, image, tile_size=640)
        tiled = upsample(gpu, lr, image, tile_size=200)
        host = torch.empty(1, 384, 640, 640)
        upsample(gpu, lr, image, tile_size=256, out=host)
    assert (tiled - whole).abs().max().item() <= 1e-4
    assert (host - whole.cpu()).abs().max().item() <= 1e-4


def test_batches_on_gpu_equal_single_images(model):
    lr, image = _inputs(batch=3, size=112)
    gpu = copy.deepcopy(model).cuda().half()
    with torch.inference_mode():
        batched = gpu(lr.cuda(), image.cuda())
        single = gpu(lr[1:2].cuda(), image[1:2].cuda())
    assert (batched[1:2] - single).abs().max().item() <= 1e-2


@pytest.mark.slow
def test_compiled_cuda_graphs_match_eager(model):
    from loftup.compiled import compile_upsampler

    lr, image = (t.cuda() for t in _inputs())
    gpu = copy.deepcopy(model).cuda().half()
    fn = compile_upsampler(gpu)
    with torch.inference_mode():
        eager = gpu(lr, image)
    fn(lr, image)
    out = fn(lr, image).clone()
    assert (out.float() - eager.float()).abs().max().item() <= 2e-2


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_a_model_on_another_gpu_than_the_current_one_runs_its_kernels_there(model):
    """Triton launches on the current device: a half-precision model on cuda:1 while cuda:0
    is current must still run its kernels on cuda:1 (and pass their self-test there)."""
    from loftup import kernels

    lr, image = _inputs()
    assert torch.cuda.current_device() == 0
    on1 = copy.deepcopy(model).to("cuda:1", torch.float16)
    on0 = copy.deepcopy(model).to("cuda:0", torch.float16)
    with torch.inference_mode():
        got = on1(lr.to("cuda:1", torch.float16), image.to("cuda:1"))
        assert kernels.active(image.to("cuda:1"), torch.float16)
        want = on0(lr.to("cuda:0", torch.float16), image.to("cuda:0"))
    assert got.device == torch.device("cuda", 1)
    assert (got.cpu().float() - want.cpu().float()).abs().max().item() <= 1e-2


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_cuda_graphs_on_another_gpu_than_the_current_one_replay_their_inputs(model):
    """Captured with cuda:0 current for a model on cuda:1: the graphs (whole, and halves)
    hold the forward and compute each new input's output, not the first one's again."""
    from loftup.compiled import graph_upsampler

    lr, image = _inputs()
    gpu = copy.deepcopy(model).to("cuda:1", torch.float16)
    lr, image = lr.to("cuda:1", torch.float16), image.to("cuda:1")
    lr2, image2 = lr.flip(-1), image.flip(-2)
    assert torch.cuda.current_device() == 0
    with torch.inference_mode():
        fn = graph_upsampler(gpu, lr, image)
        got = fn(lr2, image2).clone()
        fn.start(image2)
        halves = fn.finish(lr2).clone()
        want = gpu(lr2, image2)
    for out in (got, halves):
        assert (out.float() - want.float()).abs().max().item() <= 1e-2


def _half_on_gpu(model):
    """An fp16 copy of ``model`` on the GPU with fp16 features and a float32 guidance image
    (images stay float32 whatever the model's precision)."""
    lr, image = _inputs()
    return copy.deepcopy(model).cuda().half(), lr.cuda().half(), image.cuda()


def test_cuda_graph_replays_the_eager_forward(model):
    from loftup.compiled import graph_upsampler

    gpu, lr, image = _half_on_gpu(model)
    with torch.inference_mode():
        fn = graph_upsampler(gpu, lr, image)
        eager = gpu(lr, image)
        first = fn(lr, image).clone()
        lr2, image2 = lr.flip(-1), image.flip(-2)
        second = fn(lr2, image2)
        eager2 = gpu(lr2, image2)
    assert (first.float() - eager.float()).abs().max().item() <= 1e-2
    assert (second.float() - eager2.float()).abs().max().item() <= 1e-2
    assert (second.float() - first.float()).abs().max().item() > 0.1  # new inputs, new output
    with pytest.raises(ValueError, match="captured for"):
        fn(lr, image[..., :112])
    # The model refolds (and drops its cached weights) for other settings; the graph must
    # still read the weights it was captured with.
    with torch.inference_mode():
        gpu.align = 1
        gpu(lr, image)
        gpu.align = None
        torch.cuda.empty_cache()
        junk = torch.full((1 << 28,), 7.0, device="cuda")  # reuse any freed memory
        third = fn(lr, image).clone()
    del junk
    assert (third.float() - first.float()).abs().max().item() == 0.0


def test_a_graph_made_in_inference_mode_is_called_outside_it(model):
    """Its static inputs are inference tensors then: the new inputs are still copied in."""
    from loftup.compiled import graph_upsampler

    gpu, lr, image = _half_on_gpu(model)
    lr2, image2 = lr.flip(-1), image.flip(-2)
    with torch.inference_mode():
        fn = graph_upsampler(gpu, lr, image)
        want = gpu(lr2, image2)
    got = fn(lr2, image2).clone()
    halves = fn.start(image2).finish(lr2).clone()
    for out in (got, halves):
        assert (out.float() - want.float()).abs().max().item() <= 1e-2


def test_a_model_is_copied_after_a_gpu_forward(model):
    """Its memo then holds the CUDA events of its entries' making, which cannot be copied:
    copy.deepcopy (the benches' precision copies, an EMA teacher) leaves the memo out."""
    gpu, lr, image = _half_on_gpu(model)
    with torch.inference_mode():
        first = gpu(lr, image)
    assert any(k[0] == "made" for k in gpu._fused_cache[1].memo)  # events beside its entries
    twin = copy.deepcopy(gpu)
    with torch.inference_mode():
        again = twin(lr, image)
    assert (again.float() - first.float()).abs().max().item() <= 1e-2


def test_local_attention_on_gpu_matches_cpu_eager_and_in_a_graph():
    """A model with attention_window: the GPU's tiled forward and a CUDA graph of the untiled
    one (which once attended globally) give the CPU's float32 output."""
    from loftup import LoftUp
    from loftup.compiled import graph_upsampler

    torch.manual_seed(0)
    local = LoftUp(dim=64, num_heads=2, attention_window=5).eval()
    g = torch.Generator().manual_seed(3)
    lr, image = torch.randn(1, 64, 12, 12, generator=g), torch.randn(1, 3, 168, 140, generator=g)
    with torch.inference_mode():
        ref = local(lr, image)
        gpu = copy.deepcopy(local).cuda()
        with tf32(False):
            eager = gpu(lr.cuda(), image.cuda()).cpu()
            graphed = graph_upsampler(gpu, lr.cuda(), image.cuda())(lr.cuda(), image.cuda())
    assert (eager - ref).abs().max().item() <= 1e-4
    assert (graphed.cpu() - ref).abs().max().item() <= 1e-4


def test_cuda_graph_and_eager_halves_match_the_whole_forward(model):
    """start(image) then finish(lr_feats): the image's half queued before the backbone."""
    from loftup import start_upsample
    from loftup.compiled import graph_upsampler

    gpu, lr, image = _half_on_gpu(model)
    with torch.inference_mode():
        fn = graph_upsampler(gpu, lr, image)
        whole = fn(lr, image).clone()
        with pytest.raises(RuntimeError, match="start"):
            fn.finish(lr)
        assert fn.start(image) is fn  # start(...).finish(...), as with start_upsample
        halves = fn.finish(lr).clone()
        fn.start(image.flip(-1))
        flipped = fn.finish(lr).clone()
        eager = start_upsample(gpu, image).finish(lr)
        ref = gpu(lr, image)
        # the image's half on a second stream, with work queued on the current one meanwhile
        side = torch.cuda.Stream()
        fn.start(image, stream=side)
        busy = torch.randn(4096, 4096, device="cuda", dtype=torch.float16) @ torch.randn(
            4096, 4096, device="cuda", dtype=torch.float16
        )
        on_side = fn.finish(lr).clone()
        fn.start(image.flip(-1), stream=side)  # waits for the decode that read the tokens
        flipped_side = fn.finish(lr).clone()
        pending = start_upsample(gpu, image, stream=side)
        del busy
        eager_side = pending.finish(lr).clone()
        torch.cuda.synchronize()
    # the same kernels (exactly equal on the CPU, tests/test_tiling.py); cuDNN may pick other
    # algorithms for another capture, so the GPU bound is the one of the other graph tests
    assert (halves.float() - whole.float()).abs().max().item() <= 1e-2
    assert (flipped.float() - whole.float()).abs().max().item() > 0.1
    assert (eager.float() - ref.float()).abs().max().item() <= 1e-2
    for got, want in ((on_side, halves), (flipped_side, flipped), (eager_side, eager)):
        assert (got.float() - want.float()).abs().max().item() <= 1e-2


def test_encodings_made_on_a_second_stream_are_waited_for(model):
    """start_upsample(image, stream=side) makes a new size's coordinate encodings on the side
    stream, where they wait behind other work; a forward of that size queued meanwhile on the
    current stream finds them in the memo and must wait for them, not read memory not yet
    written."""
    from loftup import start_upsample

    gpu, lr, image = _half_on_gpu(model)
    ref = copy.deepcopy(gpu)  # its own memo
    with torch.inference_mode():
        want = ref(lr, image)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            torch.cuda._sleep(1 << 28)  # the side stream is busy for a while (~0.1 s)
        pending = start_upsample(gpu, image, stream=side)
        racing = gpu(lr, image)  # reads the encodings the side stream has not made yet
        done = pending.finish(lr)
        torch.cuda.synchronize()
    assert (racing.float() - want.float()).abs().max().item() <= 1e-2
    assert (done.float() - want.float()).abs().max().item() <= 1e-2


def test_graphs_read_their_own_encodings_whatever_the_memo_does(model):
    """The memo of positional and coordinate encodings is emptied at 512 entries (a process
    that has seen many shapes): a graph keeps the entries it read, so freed and reused memory
    does not change its output. A graph captured while the memo misses computes them itself
    and keeps none of them in the memo (a tensor made during capture holds nothing until a
    replay, and an eager forward would read it)."""
    from loftup.compiled import graph_upsampler
    from loftup.fastpath import memo
    from loftup.tiling import compute_dtype

    gpu, lr, image = _half_on_gpu(model)
    fw = gpu.fused(compute_dtype(gpu, image.device), gpu.conv, gpu.align)  # the graph's
    with torch.inference_mode():
        fn = graph_upsampler(gpu, lr, image)
        want = fn(lr, image).clone()
        for i in range(600):  # past 512 entries: emptied (after the queued work), refilled
            memo(fw, ("test", i), lambda: torch.zeros(1, device="cuda"))
        assert len(fw.memo) < 600
        fw.memo.clear()
        torch.cuda.empty_cache()
        # the freed entries' blocks handed out again, of their sizes (the allocator's small pool)
        junk = [
            torch.full((k,), 7.0, device="cuda", dtype=torch.float16)
            for k in (64, 256, 1024, 4096, 16384, 65536)
            for _ in range(200)
        ]
        again = fn(lr, image).clone()
        fn.start(image)  # the halves are captured now, with every encoding a miss
        halves = fn.finish(lr).clone()
        assert not fw.memo
        eager = gpu(lr, image)
        assert fw.memo  # an eager forward fills it
    del junk
    assert (again.float() - want.float()).abs().max().item() == 0.0
    assert (halves.float() - want.float()).abs().max().item() <= 1e-2
    assert (eager.float() - want.float()).abs().max().item() <= 1e-2


def test_streamed_pipeline_output_on_gpu_is_the_whole_one(tmp_path):
    """loftup upsample's streaming on CUDA: fp16 tiles copied to the host one by one, into
    memory-mapped files, give the files of the output held whole."""
    from transformers import Dinov2Model

    import loftup
    from loftup.bench.gpu import dinov2_config
    from loftup.extract import collect_inputs, run

    torch.manual_seed(0)  # 384 channels: the kernels the tests above compiled and tuned
    Dinov2Model(dinov2_config("vits14")).save_pretrained(tmp_path / "vits14")
    backbone = loftup.get_featurizer("dinov2_vits14", weights=tmp_path / "vits14")
    up = loftup.LoftUp(dim=384)
    up.tile_size = 128  # a 300 x 450 output: 3 x 4 tiles
    pipe = loftup.load_pipeline(up, backbone=backbone, device="cuda", dtype="float16")
    g = torch.Generator().manual_seed(0)
    pixels = (torch.rand(200, 300, 3, generator=g) * 255).to(torch.uint8).numpy()
    from PIL import Image

    Image.fromarray(pixels).save(tmp_path / "im.png")
    jobs, _ = collect_inputs([str(tmp_path / "im.png")])
    for name, above in (("whole", 1e12), ("streamed", 0)):
        report = run(
            jobs, pipe, tmp_path / name, size=300, fmt="npy", save_dtype=torch.float16,
            stream_above=above,
        )  # fmt: skip
        assert report.written == 1 and not report.failed
    import numpy as np

    whole = np.load(tmp_path / "whole" / "im.npy")
    streamed = np.load(tmp_path / "streamed" / "im.npy")
    assert whole.shape == streamed.shape == (384, 300, 450) and whole.dtype == np.float16
    # the same kernels; cuDNN may choose other algorithms from one call to the next
    assert np.abs(whole.astype(np.float32) - streamed.astype(np.float32)).max() <= 1e-2


def test_each_torchrun_process_takes_its_own_gpu_or_is_told_why_not():
    """Under torchrun a CUDA device is the process's local-rank GPU; more processes on a node
    than GPUs is a named error with the fix, not "invalid device ordinal" from deep inside."""
    from loftup.api import resolve_device
    from loftup.errors import LoftUpError

    n = torch.cuda.device_count()
    assert resolve_device("cuda", local_rank=n - 1) == torch.device("cuda", n - 1)
    assert resolve_device("auto", local_rank=0) == torch.device("cuda", 0)
    with pytest.raises(
        LoftUpError, match=f"local rank {n} needs cuda:{n}, but this machine has {n} GPU"
    ):
        resolve_device("cuda", local_rank=n)
    with pytest.raises(LoftUpError, match=f"torchrun --nproc_per_node {n}"):
        resolve_device("cuda:0", local_rank=n)
    with pytest.raises(
        LoftUpError,
        match=f"device cuda:{n} was asked for, .* visible.*; use (cuda:0|one of cuda:0 to)",
    ):
        resolve_device(f"cuda:{n}")


def test_an_output_larger_than_the_gpu_fails_by_name_and_the_next_image_runs(tmp_path):
    """loftup upsample on a GPU: an image asked at a size whose guide alone outgrows what the
    card has left fails with the reason (CUDA's out-of-memory, read), its memory is given back, and the next
    image is computed."""
    from PIL import Image

    import loftup
    from loftup.extract import collect_inputs, run

    gc.collect()  # what earlier tests left (their graphs' pools) is not this run's to give back
    torch.cuda.empty_cache()
    torch.manual_seed(0)
    pipe = loftup.load_pipeline(loftup.LoftUp(dim=32), backbone="dinov2_tiny", device="cuda")
    g = torch.Generator().manual_seed(0)
    for name in ("a", "b"):
        pixels = (torch.rand(40, 60, 3, generator=g) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(tmp_path / f"{name}.png")
    jobs, _ = collect_inputs([str(tmp_path / "a.png")])
    # the card filled but for 2 GiB: an output under the 65536 x 65536 px one may hold (a
    # 20000 x 30000 float32 RGB guide, 7.2 GB) outgrows it on a GPU of any size, at allocation
    free, _ = torch.cuda.mem_get_info()
    hog = torch.empty(max(free - (2 << 30), 0), dtype=torch.uint8, device="cuda")
    report = run(jobs, pipe, tmp_path / "huge", size=20000, stream_above=float("inf"))
    ((path, reason),) = report.failed
    assert path.endswith("a.png") and "the GPU could not allocate" in reason, reason
    assert torch.cuda.memory_reserved() < hog.numel() + 1e9  # the run's own given back
    del hog
    torch.cuda.empty_cache()
    jobs, _ = collect_inputs([str(tmp_path / "b.png")])
    report = run(jobs, pipe, tmp_path / "small", size=48)
    assert report.written == 1 and not report.failed


def test_training_on_the_gpu_is_the_cpus_and_learns(tmp_path):
    """`loftup train` on CUDA (its default device where there is one): stage 1's first loss is
    the CPU's (float32, TF32 off), the run learns, its checkpoint computes on the CPU what the
    GPU computes, and stage 2 and bfloat16 autocast run."""
    import loftup
    from loftup.train import train
    from train_fixtures import tiny_config, tiny_sam, write_folder

    # a plain image folder with superpixel masks: SA-1B's RLE masks need pycocotools, which the
    # lent GPU machines do not have
    data = write_folder(tmp_path / "images", 8, size=56)

    def config(out, stage, steps, *extra):
        return tiny_config(data, tmp_path / out, stage, steps, "data.masks=superpixels", *extra)

    with tf32(False):
        cpu = train(config("cpu", 1, 1, "device=cpu"))
        gpu = train(config("gpu", 1, 16, "device=cuda"))
    first_cpu, first_gpu = cpu.history[0]["loss"], gpu.history[0]["loss"]
    assert abs(first_gpu - first_cpu) <= 1e-3 * max(1.0, abs(first_cpu)), (first_gpu, first_cpu)
    losses = [r["loss"] for r in gpu.history]
    assert sum(losses[-4:]) < 0.5 * sum(losses[:4]), losses

    model = loftup.load_upsampler(gpu.checkpoint)  # on the CPU
    lr, image = torch.randn(1, model.config.dim, 4, 4), torch.rand(1, 3, 56, 56)
    with torch.inference_mode(), tf32(False):
        on_cpu = model(lr, image)
        on_gpu = copy.deepcopy(model).cuda()(lr.cuda(), image.cuda()).cpu()
    assert (on_gpu - on_cpu).abs().max().item() <= 1e-4

    stage2 = train(config("s2", 2, 4, "device=cuda", f"init={gpu.checkpoint}"))
    half = train(config("bf16", 1, 4, "device=cuda", "precision=bf16"))
    sam = tiny_sam(tmp_path / "sam")  # SAM's masks, computed on the GPU before the steps
    with_sam = train(config("sam", 1, 4, "device=cuda", "data.masks=sam", f"data.sam_weights={sam}",
                            f"data.cache_dir={tmp_path / 'masks'}"))  # fmt: skip
    assert len(list((tmp_path / "masks").rglob("*.npz"))) == 8  # one file of masks per image
    for run in (stage2, half, with_sam):
        assert len(run.history) == 4 and run.checkpoint.exists()
        assert all(torch.isfinite(torch.tensor(r["loss"])) for r in run.history)


def test_evaluation_on_the_gpu_gives_the_cpus_figures(tmp_path):
    """`loftup eval seg`, `depth`, `normals` and `davis` with --device cuda: the probes and the
    tracking run on the GPU from the same features (cached on the first run, read back on the
    next) and give the CPU's figures."""
    from eval_data import (
        DIM,
        TEST_BACKBONE,
        run_eval,
        write_cocostuff,
        write_davis,
        write_nyu_normals,
        write_nyuv2,
    )

    torch.manual_seed(0)
    up = tmp_path / "up"
    loftup_model = perturbed_loftup(DIM)
    loftup_model.save_pretrained(up, backbone=TEST_BACKBONE)
    write_cocostuff(tmp_path / "coco")
    write_davis(tmp_path / "davis", frames=4)

    def run(task, root, device, *extra):
        common = ["--size", "28", "--device", device, "--cache-dir", str(tmp_path / "cache")]
        with tf32(False):
            return run_eval(task, root, str(up), tmp_path, *common, *extra, name=f"{task}-{device}")

    seg_cpu = run("seg", tmp_path / "coco", "cpu", "--epochs", "2")
    seg_gpu = run("seg", tmp_path / "coco", "cuda", "--epochs", "2")
    assert seg_gpu["cache"]["misses"] == 0  # the CPU run's features, read on the GPU
    for key in ("miou", "pixel_accuracy"):
        assert abs(seg_gpu["metrics"][key] - seg_cpu["metrics"][key]) <= 0.02, key
    write_nyu_normals(write_nyuv2(tmp_path / "nyu"))
    for task, keys in (("depth", ("delta1",)), ("normals", ("within_11.25", "within_30"))):
        cpu = run(task, tmp_path / "nyu", "cpu", "--epochs", "2")
        gpu = run(task, tmp_path / "nyu", "cuda", "--epochs", "2")
        for key in keys:
            assert abs(gpu["metrics"][key] - cpu["metrics"][key]) <= 0.02, (task, key)
    davis_cpu = run("davis", tmp_path / "davis", "cpu")
    davis_gpu = run("davis", tmp_path / "davis", "cuda")
    assert abs(davis_gpu["metrics"]["J&F_mean"] - davis_cpu["metrics"]["J&F_mean"]) <= 0.02


def test_sam_masks_on_the_gpu(tmp_path):
    """Stage 1's SAM masks (data.masks=sam) where they run by default: on CUDA. The same tiny
    random SAM gives masks of the CPU's kind on the GPU (random weights: the plumbing, not the
    masks' quality), and release() hands the GPU memory back."""
    from loftup.data.sam import SamMaskGenerator
    from train_fixtures import scene, tiny_sam

    weights = tiny_sam(tmp_path / "sam")
    image = scene(0, 32)[0]
    kw = dict(points_per_side=4, pred_iou_thresh=0, stability_thresh=0)
    on_cpu = SamMaskGenerator(weights, device="cpu", **kw)(image)
    # cuBLAS keeps a workspace per stream from its first product on, never freed: made here,
    # before the count, if this test runs alone
    x = torch.ones(8, 8, device="cuda")
    torch.nn.functional.linear(x, x, x[0]) @ x
    del x
    before = torch.cuda.memory_allocated()
    gen = SamMaskGenerator(weights, **kw)  # CUDA by default where there is one
    assert gen.device.type == "cuda"
    with tf32(False):
        masks = gen(image)
    assert masks.dtype == bool and masks.shape[1:] == (32, 32) and 0 < len(masks) <= 48
    assert abs(len(masks) - len(on_cpu)) <= 2, (len(masks), len(on_cpu))
    gen.release()
    assert torch.cuda.memory_allocated() <= before


@pytest.mark.parametrize("size", [(1500, 1), (12, 12), (1, 1)])
def test_resizes_beyond_the_antialiased_kernel_give_the_cpu_numbers(size):
    """CUDA's antialiased bilinear refused to shrink an axis by more than about 94x (too much
    shared memory): a 1-pixel-wide output, or size=12, of a 1500 px image failed inside torch
    on the GPU only. Such a resize is made on the CPU, with the CPU's numbers."""
    from loftup.featurizers.sizes import resize_images

    images = torch.rand(1, 3, 1500, 1500, generator=torch.Generator().manual_seed(0))
    out = resize_images(images.cuda(), size)
    assert out.device.type == "cuda" and out.shape == (1, 3, *size)
    torch.testing.assert_close(out.cpu(), resize_images(images, size), rtol=0, atol=1e-5)


def test_probes_fit_where_their_features_are():
    """A probe fitted on GPU features without ``device`` was built on the CPU while its batches
    stayed on the GPU (a device mismatch at the first step): it now goes where the features
    are, and scores as the CPU fit does."""
    from loftup.eval.probe import ProbeConfig, fit_depth_probe, fit_linear_probe

    gen = torch.Generator().manual_seed(0)
    feats, depth = torch.randn(4, 8, 6, 6, generator=gen), torch.rand(4, 6, 6, generator=gen) + 1
    labels = (feats[:, 0] > 0).long()
    cfg = ProbeConfig(epochs=2, batch_size=2, lr=1e-2)
    for fit, target in ((lambda f, t: fit_linear_probe(f, t, 2, config=cfg), labels),
                        (lambda f, t: fit_depth_probe(f, t, config=cfg), depth)):  # fmt: skip
        probe = fit(feats.cuda(), target.cuda())
        assert next(probe.parameters()).device.type == "cuda"
        on_cpu = fit(feats, target)
        for a, b in zip(probe.parameters(), on_cpu.parameters()):
            torch.testing.assert_close(a.cpu(), b, rtol=1e-4, atol=1e-5)
