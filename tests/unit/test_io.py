"""Hits files: round trips through CSV, ROOT and HDF5, and clear errors on malformed files."""

import h5py
import numpy as np
import pytest
import torch

from mutomo.detector import Hits
from mutomo.io import HitsData, HitsFileError, read_csv, read_hdf5, read_root, write_csv, write_hdf5, write_root

D = torch.float64
Z_ABOVE, Z_BELOW = [1.5, 1.4, 1.3], [0.3, 0.2, 0.1]


def sample_hits(n=50, seed=0):
    gen = torch.Generator().manual_seed(seed)
    sides = []
    for z in (Z_ABOVE, Z_BELOW):
        true_xy = torch.rand(len(z), n, 2, generator=gen, dtype=D)
        weight = (torch.rand(len(z), n, generator=gen, dtype=D) < 0.9).to(D)
        weight[:, 0] = 1.0  # muon 0 is recorded everywhere
        sides.append(
            Hits(
                xy=true_xy + 1e-4 * torch.randn(len(z), n, 2, generator=gen, dtype=D),
                z=torch.tensor(z, dtype=D),
                resolution=torch.full((len(z),), 1e-4, dtype=D),
                weight=weight,
                true_xy=true_xy,
            )
        )
    momentum = torch.exp(torch.rand(n, generator=gen, dtype=D) * 5)
    return HitsData(above=sides[0], below=sides[1], momentum=momentum)


def assert_same_recorded(a: HitsData, b: HitsData, keep=None, atol=1e-9):
    keep = torch.ones(a.n_muons, dtype=torch.bool) if keep is None else keep
    assert b.n_muons == int(keep.sum())
    for sa, sb in ((a.above, b.above), (a.below, b.below)):
        rec = sa.weight[:, keep] >= 0.5
        assert torch.allclose(sb.z.double(), sa.z, atol=1e-12)
        assert torch.equal(sb.weight >= 0.5, rec)
        assert torch.allclose(sb.xy.double()[rec], sa.xy[:, keep][rec], atol=atol)
    assert torch.allclose(b.momentum.double(), a.momentum[keep], rtol=1e-9)


@pytest.mark.parametrize("unit", ["mm", "cm", "m"])
def test_csv_round_trip(tmp_path, unit):
    data = sample_hits()
    path = write_csv(tmp_path / "hits.csv", data, length_unit=unit)
    back = read_csv(path, resolution=1e-4, z_split=0.8, length_unit=unit, dtype=D)
    assert_same_recorded(data, back)
    assert back.above.true_xy is None and torch.allclose(back.above.resolution, torch.full((3,), 1e-4, dtype=D))


def test_csv_units_are_converted(tmp_path):
    path = tmp_path / "one.csv"
    path.write_text("E,X0,X1,X2,X3,Y0,Y1,Y2,Y3,Z0,Z1,Z2,Z3\n" + "1000,1,2,3,4,5,6,7,8,1500,1400,200,100\n")
    data = read_csv(path, resolution=[1e-4, 1e-4, 2e-4, 2e-4], z_split=800 * 1e-3, dtype=D)
    assert data.above.z.tolist() == pytest.approx([1.5, 1.4]) and data.below.z.tolist() == pytest.approx([0.2, 0.1])
    assert data.above.xy[:, 0, 0].tolist() == pytest.approx([1e-3, 2e-3])
    assert data.below.resolution.tolist() == pytest.approx([2e-4, 2e-4])
    # E = 1000 MeV kinetic -> p = sqrt(T^2 + 2 T m) with m = 0.1057 GeV.
    assert float(data.momentum[0]) == pytest.approx(np.sqrt(1.0 + 2 * 0.1056583755), rel=1e-9)


def test_root_round_trip_drops_only_unrecorded_muons(tmp_path):
    data = sample_hits(n=80)
    data.above.weight[:, 5] = 0.0
    data.below.weight[:, 5] = 0.0  # never recorded: no ROOT entry
    path = write_root(tmp_path / "hits.root", data)
    back = read_root(path, resolution=1e-4, z_split=0.8, dtype=D)
    keep = torch.ones(80, dtype=torch.bool)
    keep[5] = False
    assert_same_recorded(data, back, keep)


def test_hdf5_round_trip_is_lossless(tmp_path):
    data = sample_hits()
    data.above.weight[0, 3] = 0.37  # a hit probability, not a 0/1 flag: kept as is
    back = read_hdf5(write_hdf5(tmp_path / "hits.h5", data), dtype=D)
    for sa, sb in ((data.above, back.above), (data.below, back.below)):
        for field in ("xy", "z", "resolution", "weight", "true_xy"):
            assert torch.equal(getattr(sa, field), getattr(sb, field)), field
    assert torch.equal(back.momentum, data.momentum)


def write_text(tmp_path, text):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    return path


HEADER = "E,X0,X1,X2,X3,Y0,Y1,Y2,Y3,Z0,Z1,Z2,Z3\n"
ROW = "1000,1,2,3,4,5,6,7,8,1500,1400,200,100\n"


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty file"),
        ("E,X0,X1,Y0,Y1,Z0\n" + "1,1,1,1,1,1\n", r"lacks column\(s\) \['Z1'\]"),
        (HEADER, "no data rows"),
        (HEADER + ROW + "1000,1,2\n", "row 3 has 3 fields"),
        (HEADER + ROW + ROW.replace(",5,", ",abc,"), "row 3, column Y0: 'abc' is not a number"),
        (HEADER + ROW + ROW + ROW.replace(",1400,", ",1450,"), "row 4, column Z1"),
        (HEADER + ROW.replace("1000,", "-5,"), "column E"),
    ],
)
def test_malformed_csv_names_the_row_and_column(tmp_path, text, message):
    with pytest.raises(HitsFileError, match=message):
        read_csv(write_text(tmp_path, text), resolution=1e-4, z_split=0.8)


def test_csv_needs_two_planes_a_side(tmp_path):
    with pytest.raises(HitsFileError, match="1 plane"):
        read_csv(write_text(tmp_path, HEADER + ROW), resolution=1e-4, z_split=1.45)
    with pytest.raises(ValueError, match="length_unit"):
        read_csv(write_text(tmp_path, HEADER + ROW), resolution=1e-4, z_split=0.8, length_unit="inch")


def test_malformed_root_names_the_tree_branch_or_event(tmp_path):
    import uproot

    path = tmp_path / "bad.root"
    with uproot.recreate(path) as f:
        f["hits"] = {"eventID": np.array([0, 0]), "x": np.zeros(2), "y": np.zeros(2), "z": np.array([1.0, 2.0])}
    with pytest.raises(HitsFileError, match="no branch 'energy'"):
        read_root(path, resolution=1e-4, z_split=0.8)
    with pytest.raises(HitsFileError, match="no tree 'muons'"):
        read_root(path, resolution=1e-4, z_split=0.8, tree="muons")
    with uproot.recreate(path) as f:
        f["hits"] = {
            "eventID": np.array([7, 7, 7]),
            "x": np.zeros(3),
            "y": np.zeros(3),
            "z": np.array([1500.0, 1500.0, 100.0]),
            "energy": np.full(3, 1000.0),
        }
    with pytest.raises(HitsFileError, match="eventID 7 has 2 hits"):
        read_root(path, resolution=1e-4, z_split=0.8)
    text = tmp_path / "not.root"
    text.write_text("hello")
    with pytest.raises(HitsFileError, match="not a readable ROOT file"):
        read_root(text, resolution=1e-4, z_split=0.8)


def test_malformed_hdf5_names_the_dataset(tmp_path):
    path = write_hdf5(tmp_path / "hits.h5", sample_hits())
    with h5py.File(path, "a") as f:
        del f["below/weight"]
        f["below/weight"] = np.zeros((3, 7))
    with pytest.raises(HitsFileError, match=r"'below/weight' has shape \(3, 7\)"):
        read_hdf5(path)
    with h5py.File(path, "a") as f:
        del f["below/weight"]
    with pytest.raises(HitsFileError, match="missing dataset 'below/weight'"):
        read_hdf5(path)
    with h5py.File(path, "a") as f:
        f.attrs["format"] = "other"
    with pytest.raises(HitsFileError, match="attribute 'format'"):
        read_hdf5(path)
    with pytest.raises(ValueError, match="no momentum"):
        write_csv(tmp_path / "x.csv", HitsData(sample_hits().above, sample_hits().below, None))


@pytest.mark.parametrize("cell", ["nan", "", "NaN"])
def test_csv_nan_z_of_a_recorded_hit_names_its_row(tmp_path, cell):
    """A recorded hit (X and Y given) with no Z is refused naming its row and column, also when
    it is the plane's only hit (once refused as 'plane 1 has no recorded hit')."""
    bad_row = ROW.replace(",1400,", f",{cell},")
    with pytest.raises(HitsFileError, match="row 3, column Z1: empty or nan, but X1 and Y1 record a hit"):
        read_csv(write_text(tmp_path, HEADER + ROW + bad_row), resolution=1e-4, z_split=0.8)
    with pytest.raises(HitsFileError, match="row 2, column Z1: empty or nan"):
        read_csv(write_text(tmp_path, HEADER + bad_row + bad_row), resolution=1e-4, z_split=0.8)


def test_csv_unrecorded_plane_may_leave_z_empty(tmp_path):
    unrecorded = "1000,1,,3,4,5,,7,8,1500,,200,100\n"
    data = read_csv(write_text(tmp_path, HEADER + ROW + unrecorded), resolution=1e-4, z_split=0.8)
    assert data.n_muons == 2 and data.above.weight[:, 1].tolist() == [1.0, 0.0]


def test_hdf5_nan_in_optional_true_xy_is_refused(tmp_path):
    path = write_hdf5(tmp_path / "hits.h5", sample_hits())
    assert read_hdf5(path).below.true_xy is not None  # finite: read
    with h5py.File(path, "a") as f:
        f["below/true_xy"][1, 4, 0] = np.nan
    with pytest.raises(HitsFileError, match=r"'below/true_xy' at index 1, 4, 0 is NaN"):
        read_hdf5(path)
    with h5py.File(path, "a") as f:
        f["below/true_xy"][1, 4, 0] = np.inf
    with pytest.raises(HitsFileError, match=r"'below/true_xy' at index 1, 4, 0: inf m is not a plausible"):
        read_hdf5(path)
