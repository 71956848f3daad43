"""Build one package of :mod:`mutomo.volume.aot` (run by it as ``python -m mutomo.volume.aot_build``).

Kept in its own module, run in its own process: exporting and compiling loads torch's compiler
(dynamo, inductor and their caches, ~180 MiB), which the process that trains should not carry.

    python -m mutomo.volume.aot_build KIND DTYPE BATCHED [CONSTANT ...] --out PATH
"""

from __future__ import annotations

import argparse
import ast
import os
import tempfile
from pathlib import Path

import torch
import torch._inductor

from mutomo.volume.aot import KernelSpec, example_inputs, module_of


def dynamic_shapes(spec: KernelSpec) -> tuple:
    """The muon count, the table rows and the grid dynamic, every other size fixed."""
    mu = torch.export.Dim("muons", min=2)
    if spec.kind == "enter":
        cells = torch.export.Dim("cells", min=2)
        materials, grid = torch.export.Dim("materials"), torch.export.Dim("grid")
        vec = {0: mu}
        return (
            vec, vec, vec, vec, vec, vec, {1: cells}, {0: cells}, {0: materials, 1: grid}, None, None, None,
            vec if spec.batched else None,
        )  # fmt: skip
    vec = {0: mu}
    return (
        vec, vec, (vec, vec, vec), vec, vec, vec, vec, (vec,) * 5, vec, vec, vec, {1: mu}, ({0: mu}, {0: mu}), vec,
        None,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=("enter", "scatter"))
    parser.add_argument("dtype", choices=("float32", "float64"))
    parser.add_argument("batched", type=int, choices=(0, 1))
    parser.add_argument("constants", nargs="*", type=ast.literal_eval)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    spec = KernelSpec(args.kind, args.dtype, bool(args.batched), tuple(args.constants))
    with torch.no_grad():
        program = torch.export.export(module_of(spec), example_inputs(spec), dynamic_shapes=dynamic_shapes(spec))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(suffix=".pt2", dir=args.out.parent)
    os.close(handle)
    try:
        torch._inductor.aoti_compile_and_package(program, package_path=tmp)
        os.replace(tmp, args.out)  # atomic: a process loading the cache never sees half a file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


if __name__ == "__main__":
    main()
