"""How many muons does the uranium voxel of the lorry see? Tiled K = 8 modules, three cargos with
uranium (selection seed 777), 60 s, true momenta: reconstructed muons per cargo, muons in the
uranium voxel, and the uranium voxel's rank in the binned-PoCA 1/X0 map and the ASR map.
Run: ``PYTHONPATH=src python benchmarks/lorry_uranium_voxel.py``. Results in benchmarks/README.md."""

import torch

from mutomo.config.build import load_benchmark
from mutomo.optimise.problem import key_generator
from mutomo.reco import measure
from mutomo.reco.asr import AngleStatisticsReconstruction
from mutomo.reco.x0 import PocaX0
from mutomo.simulate import simulate
from mutomo.studies.starts import tiled_for

torch.set_num_threads(1)
problem = load_benchmark("lorry_uranium")
design = tiled_for(problem, 8)
for i in range(3):
    s = problem.scene.sample((777, 2, i), present=True)
    vol = s.volume
    tm = s.target_mask()
    with torch.no_grad():
        r = simulate(
            design.detector(),
            vol,
            problem.source,
            problem.n_muons,
            key_generator((5, i)),
            step_length=problem.step_length,
        )
        p = 0.5 * (r.muons_in.momentum + r.muons_out.momentum)
        data = measure(r.hits_above, r.hits_below, vol, p, r.muons_in.weight * (r.muons_out.weight > 0))
        m = PocaX0(extended=False)(data, vol)
        a = AngleStatisticsReconstruction()(data, vol)
    sc = m.score.flatten()
    meas = m.measured.flatten()
    t = tm.flatten().bool()
    print(
        "muons in",
        float(r.muons_in.weight.sum()),
        "measured muons",
        float(data.weight.sum()),
        "measured voxels",
        int(meas.sum()),
        "U voxel measured",
        bool(meas[t].any()),
        "count",
        (m.count.flatten()[t] if m.count is not None else None),
    )
    print(
        "  U score",
        sc[t].tolist(),
        "rank",
        int((sc[meas] > sc[t].max()).sum()),
        "of",
        int(meas.sum()),
        "max",
        float(sc[meas].max()),
        "median",
        float(sc[meas].median()),
    )
    asc = a.score.flatten()
    print("  ASR U", asc[t].tolist(), "rank", int((asc > asc[t].max()).sum()))
