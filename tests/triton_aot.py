"""Compile the Triton kernels, exactly as the forward launches them, for NVIDIA GPUs that this
machine does not have (ahead of time: Triton's compiler and the ptxas it ships need no GPU),
and for AMD ones (``gfx942``: Triton's AMD backend and the linker it ships).

    python tests/triton_aot.py 90 80 --dtypes float16 bfloat16

prints one JSON object per (kernel, autotuning candidate, dtype, architecture) with ptxas's
register and spill counts and the number of contracted multiply-adds in the PTX. Run by
``tests/test_kernels.py`` in a process of its own, because the compiler is off wherever Triton's
CPU interpreter (``TRITON_INTERPRET=1``) was chosen.

How the launches are found: a float16 (or bfloat16) LoftUp for C = 384 with the GPU's
alignment runs on the CPU with the kernels switched on, and ``_triton_launch.launch`` records
its arguments instead of running anything (the outputs are garbage; only the arguments are
kept). So the signatures and compile-time constants are those of the real forward, not a copy.

Works with each Triton release from 3.0 (torch 2.4's) on: the compiler's interface changed
between them (how the arguments' types, constants and alignment are given, where ptxas is),
and :func:`_source` and :func:`ptxas` speak each one's. ``tests/test_kernels.py`` runs it with
the installed Triton and, in the slow suite, with Triton 3.0 installed into a folder.
"""

from __future__ import annotations

import argparse
import collections
import inspect
import json
import os
import re
import subprocess
import sys
import tempfile

os.environ.pop("TRITON_INTERPRET", None)

import torch  # noqa: E402

try:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.backends.nvidia import compiler as nvidia
    from triton.compiler import ASTSource

    def ptxas(arch: int) -> str:
        """The ptxas Triton itself uses for ``arch``: ``get_ptxas()`` gives a tool with a path
        (3.4, 3.5), takes the architecture (3.3: a (path, version) pair; 3.6 on: a tool), or
        is missing (3.0 to 3.2: ``_path_to_binary``)."""
        if not hasattr(nvidia, "get_ptxas"):
            return nvidia._path_to_binary("ptxas")[0]
        try:
            tool = nvidia.get_ptxas(arch)
        except TypeError:
            tool = nvidia.get_ptxas()
        return tool[0] if isinstance(tool, tuple) else tool.path

    ptxas(90)
except Exception as e:  # noqa: BLE001 - no Triton, no NVIDIA backend, or no ptxas in it
    print(f"SKIP: Triton's NVIDIA compiler is not usable here ({type(e).__name__}: {e})")
    sys.exit(3)


def _import_kernels():
    """``loftup._triton_kernels``. Triton 3.2 and 3.3 ask the GPU driver for the autotuner's
    timer as each kernel is declared, and there is no driver here; this script times nothing
    (it records launches and compiles them), so for those a stand-in whose timer refuses to run
    answers that question while the module is imported."""
    try:
        from loftup import _triton_kernels
    except RuntimeError as e:
        if "active drivers" not in str(e):
            raise
        from triton.runtime.driver import driver

        class NoGPU:
            def get_benchmarker(self):
                def refuse(*args, **kwargs):
                    raise RuntimeError("tests/triton_aot.py times nothing: there is no GPU")

                return refuse

        driver.set_active(NoGPU())
        try:
            from loftup import _triton_kernels
        finally:
            driver.reset_active()
    return _triton_kernels


from loftup import LoftUp, kernels  # noqa: E402
from loftup.tiling import upsample  # noqa: E402

_import_kernels()  # declares them, with the stand-in driver where Triton asks for one
from loftup import _triton_launch as launching  # noqa: E402 - imported with the kernels

TYPES = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}


def record(dtype: torch.dtype) -> list[tuple]:
    """(autotuned kernel, runtime signature, constants) of every launch of one forward."""
    seen, launches = set(), []

    def fake_launch(kernel, grid, *args, **kwargs):
        fn = kernel.fn if hasattr(kernel, "configs") else kernel
        names = [n for n in fn.arg_names if n not in kwargs]
        consts, sig = dict(kwargs), {}
        for p, a in zip([p for p in fn.params if p.name in names], args):
            if p.is_constexpr:  # a compile-time constant passed by position
                consts[p.name] = a
            else:  # its type, and whether Triton's launcher marks it 16-divisible
                sig[p.name] = (_type(a), _divisible(a))
        key = (fn.__name__, tuple(sorted(sig.items())), tuple(sorted(consts.items())))
        if key not in seen:
            seen.add(key)
            launches.append((kernel, sig, consts))

    torch.manual_seed(0)
    model = LoftUp(dim=384).eval().to(dtype)
    model.align = 8  # the GPU's mean padding: 404 -> 408 and 203 -> 208 channels
    lr, image = torch.randn(1, 384, 2, 2, dtype=dtype), torch.randn(1, 3, 12, 10)  # float32 image
    kernels._switch["cpu"], kernels._checked[(torch.device("cpu"), dtype)] = True, True
    real_interpreted, real_launch = kernels.interpreted, launching.launch
    kernels.interpreted, launching.launch = (lambda: True), fake_launch
    try:
        with torch.inference_mode():
            upsample(model, lr, image, conv="direct")
    finally:
        kernels.interpreted, launching.launch = real_interpreted, real_launch
        kernels._switch["cpu"] = False
    return launches


def _divisible(a) -> bool:
    """Whether Triton's launcher specialises this argument as divisible by 16 (a pointer
    16-byte aligned, an integer a multiple of 16), which lets it vectorise accesses."""
    if isinstance(a, torch.Tensor):
        return a.data_ptr() % 16 == 0
    return isinstance(a, int) and not isinstance(a, bool) and a % 16 == 0


def _type(a) -> str:
    if isinstance(a, torch.Tensor):
        return "*" + TYPES[a.dtype]
    if isinstance(a, bool):
        return "i1"
    if isinstance(a, int):
        return "i32" if -(2**31) <= a < 2**31 else "i64"
    if isinstance(a, float):
        return "fp32"
    raise TypeError(f"unexpected kernel argument {a!r}")


def _source(fn, sig: dict, consts: dict):
    """The kernel as Triton's JIT hands it to its compiler, in this Triton's own terms: the
    arguments' types, the compile-time constants and which arguments are divisible by 16."""
    aligned = [i for i, n in enumerate(fn.arg_names) if n not in consts and sig[n][1]]
    if "constexprs" in inspect.signature(ASTSource).parameters:  # Triton 3.3 on
        signature = {n: ("constexpr" if n in consts else sig[n][0]) for n in fn.arg_names}
        attrs = {(i,): [["tt.divisibility", 16]] for i in aligned}
        return ASTSource(fn, signature, constexprs=consts, attrs=attrs)
    # 3.0 to 3.2: the signature names only the run-time arguments; an AttrsDescriptor
    signature = {n: sig[n][0] for n in fn.arg_names if n not in consts}
    try:  # 3.2
        from triton.backends.compiler import AttrsDescriptor

        attrs = AttrsDescriptor.from_hints({i: 16 for i in aligned})
    except ImportError:  # 3.0, 3.1
        from triton.compiler import AttrsDescriptor

        attrs = AttrsDescriptor(divisible_by_16=tuple(aligned), equal_to_1=())
    return ASTSource(fn, signature, consts, attrs)


def compile_one(kernel, sig: dict, consts: dict, config, arch: int | str) -> dict:
    """One kernel compiled for ``arch``: an NVIDIA compute capability (80) or an AMD GPU
    (``gfx942``)."""
    fn = kernel.fn if hasattr(kernel, "configs") else kernel
    consts = {**consts, **(config.kwargs if config else {})}
    warps = config.num_warps if config else 4
    if isinstance(arch, str):
        return compile_amd(fn, sig, consts, config, arch)
    compiled = triton.compile(
        _source(fn, sig, consts),
        target=GPUTarget("cuda", arch, 32),
        options={"num_warps": warps, **launching.NO_FMA},
    )
    ptx = compiled.asm["ptx"]
    target = re.search(r"^\.target (\w+)", ptx, re.M).group(1)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "k.ptx")
        with open(path, "w") as f:
            f.write(ptx)
        report = subprocess.run(
            [ptxas(arch), f"-arch={target}", "-v", path, "-o", os.devnull],
            capture_output=True,
            text=True,
        )
    if report.returncode:
        raise RuntimeError(f"ptxas failed for {fn.__name__}: {report.stderr[-500:]}")
    regs = re.search(r"Used (\d+) registers", report.stderr)
    spills = re.search(r"(\d+) bytes spill stores", report.stderr)
    return {
        "kernel": fn.__name__,
        "triton": triton.__version__,
        "arch": target,
        "config": {**(config.kwargs if config else {}), "num_warps": warps},
        "registers": int(regs.group(1)) if regs else None,
        "spill_bytes": int(spills.group(1)) if spills else 0,
        "shared_bytes": compiled.metadata.shared,
        "contracted_fma": len(re.findall(r"\bfma\.rn\.f32\b", ptx)),
        # global loads and stores by width, e.g. {"ld.v4.b32": 2, "st.b16": 1}
        "accesses": dict(
            collections.Counter(
                m.group(1) + m.group(3)
                for m in re.finditer(r"\b(ld|st)\.global(\.nc)?((\.v\d)?\.b\d+)", ptx)
            )
        ),
        "constants": consts,
    }


def compile_amd(fn, sig: dict, consts: dict, config, arch: str) -> dict:
    """For ROCm builds of torch: the kernel through Triton's AMD backend to a code object, with
    the vector registers and spills its metadata reports (RDNA, gfx10 on, runs waves of 32)."""
    warps = config.num_warps if config else 4
    compiled = triton.compile(
        _source(fn, sig, consts),
        target=GPUTarget("hip", arch, 32 if arch.startswith(("gfx10", "gfx11", "gfx12")) else 64),
        options={"num_warps": warps, **launching.NO_FMA},
    )
    asm = compiled.asm["amdgcn"]
    assert compiled.asm.get("hsaco"), f"no code object for {fn.__name__} on {arch}"

    def field(name: str) -> int | None:
        found = re.search(rf"\.{name}:\s+(\d+)", asm)
        return int(found.group(1)) if found else None

    spills = (field("vgpr_spill_count") or 0) + (field("sgpr_spill_count") or 0)
    return {
        "kernel": fn.__name__,
        "triton": triton.__version__,
        "arch": arch,
        "config": {
            **{k: v for k, v in consts.items() if k.startswith("BLOCK_")},
            "num_warps": warps,
        },
        "registers": field("vgpr_count"),
        "spill_bytes": 4 * spills,  # a register a lane
        "constants": consts,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "archs",
        nargs="+",
        type=lambda a: a if a.startswith("gfx") else int(a),
        help="NVIDIA compute capabilities (90 80) or AMD GPUs (gfx942 gfx90a gfx1100)",
    )
    p.add_argument("--dtypes", nargs="+", default=["float16"], choices=["float16", "bfloat16"])
    p.add_argument(
        "--fixed", action="store_true", help="only the candidate the self-test launches untuned"
    )
    args = p.parse_args(argv)
    for name in args.dtypes:
        for kernel, sig, consts in record(getattr(torch, name)):
            configs = getattr(kernel, "configs", [None])
            if args.fixed:  # the one launching.launch uses under FIXED
                configs = [configs[len(configs) // 2]]
            for config in configs:
                for arch in args.archs:
                    try:
                        row = compile_one(kernel, sig, consts, config, arch)
                    except Exception as e:
                        # Triton ships the ROCm linker from 3.4 on; before, it wants ROCm's
                        if isinstance(arch, str) and "ld.lld not found" in str(e):
                            print(f"SKIP: Triton's AMD compiler is not usable here ({e})")
                            return 3
                        raise
                    print(json.dumps({"dtype": name, **row}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
