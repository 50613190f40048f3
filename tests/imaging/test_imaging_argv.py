"""WSClean command lines as data, container wrapping, naming and input errors (no WSClean run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flint.errors import FlintInputError, FlintMSError, FlintOptionsError
from flint.imaging import (
    WSCleanOptions,
    bind_dirs,
    container_argv,
    find_wsclean,
    product_base,
    run_imaging,
    wsclean_argv,
)
from flint.ms import MS
from flint.sim import SimResult

from conftest import writable_copy


def test_default_argv() -> None:
    argv = wsclean_argv(["/d/SB1.F.beam00.ms"], WSCleanOptions(), "/o/x")
    assert argv == [
        "wsclean", "-name", "/o/x", "-size", "1536", "1536", "-scale", "4asec",
        "-weight", "briggs", "0", "-niter", "20000", "-nmiter", "10", "-gain", "0.1", "-mgain", "0.8",
        "-auto-threshold", "3", "-auto-mask", "5", "-pol", "I", "-data-column", "DATA",
        "-padding", "1.2", "-use-wgridder", "-update-model-required", "-no-dirty", "-no-reorder", "/d/SB1.F.beam00.ms",
    ]


@pytest.mark.parametrize(
    ("kw", "flag"),
    [
        ({}, "-no-reorder"),  # one MFS image of one Stokes parameter: read the MS directly
        ({"pol": "Q"}, "-no-reorder"),
        ({"pol": "XX"}, "-no-reorder"),  # one polarisation, two letters
        ({"pol": "XX,YY"}, "-reorder"),
        ({"channels_out": 2}, "-reorder"),  # channel imaging: each part read once per image
        ({"pol": "IQUV", "join_polarizations": True}, "-reorder"),
        ({"reorder": "yes"}, "-reorder"),
        ({"channels_out": 8, "reorder": "no"}, "-no-reorder"),
    ],
)
def test_reordering_only_where_it_pays(kw: dict[str, object], flag: str) -> None:
    argv = wsclean_argv(["a.ms"], WSCleanOptions(**kw), "n")
    assert flag in argv
    assert ({"-reorder", "-no-reorder"} - {flag}).isdisjoint(argv)


def test_every_option_reaches_the_argv() -> None:
    o = WSCleanOptions(
        size=1024, scale_arcsec=2.5, weight="natural", niter=500, nmiter=3, threshold_jy=1e-4,
        auto_threshold=None, auto_mask=None, local_rms=True, gain=0.05, mgain=0.7, multiscale=True,
        multiscale_scales=(0, 4, 16), multiscale_scale_bias=0.7, channels_out=4, join_channels=True,
        fit_spectral_pol=2, pol="IQUV", data_column="CORRECTED_DATA", fits_mask=Path("/m/mask.fits"),
        minuv_l=100.0, taper_gaussian_arcsec=15.0, padding=1.5, use_wgridder=False, update_model=False,
        save_dirty=True, threads=8, abs_mem_gb=12.5, temp_dir=Path("/scratch"), extra_args=("-parallel-deconvolution", "512"),
        binary="/opt/bin/wsclean",
    )
    argv = wsclean_argv(["a.ms", "b.ms"], o, "n", data_column="DATA")
    joined = " ".join(argv)
    assert argv[0] == "/opt/bin/wsclean"
    for piece in (
        "-size 1024 1024", "-scale 2.5asec", "-weight natural -niter", "-niter 500", "-nmiter 3",
        "-threshold 0.0001", "-local-rms", "-gain 0.05", "-mgain 0.7", "-multiscale -multiscale-scales 0,4,16",
        "-multiscale-scale-bias 0.7", "-channels-out 4", "-join-channels", "-fit-spectral-pol 2",
        "-pol IQUV", "-data-column CORRECTED_DATA", "-fits-mask /m/mask.fits", "-minuv-l 100",
        "-taper-gaussian 15asec", "-padding 1.5", "-no-update-model-required", "-j 8", "-abs-mem 12.5",
        "-temp-dir /scratch -reorder", "-parallel-deconvolution 512 a.ms b.ms",
    ):
        assert piece in joined, piece
    for absent in ("-auto-threshold", "-auto-mask", "-use-wgridder", "-no-dirty", "briggs"):
        assert absent not in argv
    assert argv[-2:] == ["a.ms", "b.ms"]


def test_data_column_comes_from_the_ms_handle_unless_set() -> None:
    assert "CORRECTED_DATA" in wsclean_argv(["a.ms"], WSCleanOptions(), "n", data_column="CORRECTED_DATA")
    assert "MY_DATA" in wsclean_argv(["a.ms"], WSCleanOptions(data_column="MY_DATA"), "n", data_column="CORRECTED_DATA")


@pytest.mark.parametrize(
    "kw",
    [
        {"join_channels": True},  # needs channels_out >= 2
        {"channels_out": 2, "fit_spectral_pol": 2},  # needs join_channels
        {"multiscale_scales": (0, 4)},  # needs multiscale
        {"robust": 3.0},
        {"size": 4},
        {"mgain": 0.0},
        {"weight": "briggs0"},
        {"nitre": 5},  # unknown field
    ],
)
def test_bad_options_are_rejected(kw: dict[str, object]) -> None:
    with pytest.raises(FlintOptionsError, match="WSCleanOptions"):
        WSCleanOptions.create(**kw)


def test_container_argv_binds_every_folder_involved(tmp_path: Path) -> None:
    ms = tmp_path / "data" / "SB1.F.beam00.ms"
    ms.mkdir(parents=True)
    work = tmp_path / "out" / ".work"
    work.mkdir(parents=True)
    mask = tmp_path / "masks" / "m.fits"
    binds = bind_dirs([ms, work, mask, tmp_path / "out" / "sub" / "x.fits"])
    # the MS contributes its parent, an existing folder itself, a file its folder
    assert binds == [tmp_path / "data", tmp_path / "masks", work, tmp_path / "out" / "sub"]
    assert bind_dirs([work, tmp_path / "out" / "y.fits"]) == [tmp_path / "out"]  # nested: outermost only
    inner = wsclean_argv([ms], WSCleanOptions(size=64), work / "x")
    argv = container_argv(inner, "/img/wsclean.sif", binds, runtime="singularity")
    assert argv[:5] == ["singularity", "exec", "--bind", ",".join(str(b) for b in binds), "/img/wsclean.sif"]
    assert argv[5:] == inner


def test_missing_wsclean_explains_both_ways() -> None:
    with pytest.raises(FlintInputError) as info:
        find_wsclean(WSCleanOptions(binary="wsclean-that-is-not-installed"))
    msg = str(info.value)
    assert "PATH" in msg and "container" in msg and "apt-get install wsclean" in msg


def test_missing_container_image_or_runtime(tmp_path: Path) -> None:
    with pytest.raises(FlintInputError, match="does not exist"):
        find_wsclean(WSCleanOptions(container=tmp_path / "nope.sif"))
    sif = tmp_path / "wsclean.sif"
    sif.write_bytes(b"not really an image")
    import shutil

    if shutil.which("apptainer") is None:
        with pytest.raises(FlintInputError, match="apptainer"):
            find_wsclean(WSCleanOptions(container=sif))


def test_product_names() -> None:
    assert product_base(MS(Path("/d/SB101.SIM_FIELD.beam03.ms"))) == "SB101.SIM_FIELD.beam03"
    assert product_base(MS(Path("/d/SB101.SIM_FIELD.beam03.ms")), round=2) == "SB101.SIM_FIELD.beam03.round2"
    assert product_base(MS(Path("/d/my_obs.ms")), round=1) == "my_obs.round1"


def test_run_imaging_checks_inputs_before_running(tmp_path: Path, sim_field_ideal: SimResult) -> None:
    ms = MS(sim_field_ideal.ms_paths[0], column="CORRECTED_DATA")
    with pytest.raises(FlintMSError, match="CORRECTED_DATA"):
        run_imaging(ms, out_dir=tmp_path)
    with pytest.raises(FlintInputError, match="--fits-mask"):
        run_imaging(sim_field_ideal.ms_paths[0], WSCleanOptions(fits_mask=tmp_path / "none.fits"), out_dir=tmp_path)
    with pytest.raises(FlintInputError, match="was not found on PATH"):
        run_imaging(sim_field_ideal.ms_paths[0], WSCleanOptions(binary="no-such-wsclean"), out_dir=tmp_path)
    with pytest.raises(FlintMSError, match="no such Measurement Set"):
        run_imaging(tmp_path / "missing.ms", out_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_imaging_column_follows_wsclean_for_paths_and_the_handle_otherwise(tmp_path: Path, sim_field_ideal: SimResult) -> None:
    """A path images CORRECTED_DATA once calibration wrote it (as WSClean does); a handle its column."""
    from flint.imaging import imaging_column
    from flint.ms import add_column

    ms = writable_copy(sim_field_ideal.ms_paths[0], tmp_path).path
    assert imaging_column(ms) == "DATA"
    add_column(ms, "CORRECTED_DATA", fill="copy")
    assert imaging_column(ms) == "CORRECTED_DATA"
    assert imaging_column(MS(Path(ms), column="DATA")) == "DATA"
    assert imaging_column(ms, WSCleanOptions(data_column="MODEL_DATA")) == "MODEL_DATA"


# --------------------------------------------------------------------------- polarisation, cubes
def test_iquv_cube_argv() -> None:
    o = WSCleanOptions(pol="IQUV", join_polarizations=True, channels_out=8, join_channels=True, squared_channel_joining=True, cube=True)
    argv = wsclean_argv(["a.ms"], o, "n")
    joined = " ".join(argv)
    for piece in ("-channels-out 8 -join-channels -squared-channel-joining", "-pol IQUV -join-polarizations"):
        assert piece in joined, piece
    assert "-channel-range" not in argv
    argv = wsclean_argv(["a.ms"], WSCleanOptions(channels_out=4, channel_range=(4, 8)), "n")
    assert "-channel-range 4 8 -pol I -data-column" in " ".join(argv)
    plain = wsclean_argv(["a.ms"], WSCleanOptions(), "n")
    assert not {"-join-polarizations", "-squared-channel-joining", "-channel-range"} & set(plain)


@pytest.mark.parametrize(
    "pol, pols",
    [("I", ("I",)), ("iquv", ("I", "Q", "U", "V")), ("Q,U", ("Q", "U")), ("XXYY", ("XX", "YY")), ("V", ("V",))],
)
def test_pol_is_parsed(pol: str, pols: tuple[str, ...]) -> None:
    assert WSCleanOptions(pol=pol).pols == pols


@pytest.mark.parametrize(
    "kw, flag",
    [
        ({"pol": "IQ2"}, "--pol"),
        ({"pol": "XY"}, "--pol"),  # WSClean writes XY as real + imaginary images: not named by flint
        ({"pol": "II"}, "--pol"),
        ({"pol": "IQU", "join_polarizations": True}, "--pol IQUV"),
        ({"squared_channel_joining": True, "channels_out": 2}, "--join-channels"),
        ({"channel_range": (5, 5)}, "--channel-range"),
        ({"channel_range": (-1, 5)}, "--channel-range"),
        ({"cube": True}, "--channels-out"),
        ({"cube": True, "channels_out": 2, "cube_products": ("image", "restored")}, "cube_products"),
    ],
)
def test_bad_pol_and_cube_options_name_the_flag(kw: dict[str, object], flag: str) -> None:
    with pytest.raises(FlintOptionsError, match=flag):
        WSCleanOptions.create(**kw)


def test_wsclean_file_names_per_pol_and_channel() -> None:
    from flint._imaging_cubes import cube_key, product_key, wsclean_files

    files = wsclean_files(Path("w/t"), WSCleanOptions(pol="IQUV", channels_out=2))
    names = {f.path.name: product_key(f, ("I", "Q", "U", "V"), chan_offset=0) for f in files}
    assert names["t-MFS-Q-image.fits"] == "q.image"
    assert names["t-0001-V-residual.fits"] == "v.ch0001.residual"
    assert names["t-0000-psf.fits"] == "ch0000.psf" and names["t-MFS-psf.fits"] == "psf"
    assert len(files) == 3 * (4 * 3 + 1)  # MFS + 2 channels, x (4 Stokes x image/residual/model + psf)
    single = {f.path.name: product_key(f, ("I",)) for f in wsclean_files(Path("t"), WSCleanOptions(niter=0))}
    assert single == {"t-image.fits": "image", "t-psf.fits": "psf"}
    assert cube_key("I", "image") == "i.image.cube" and cube_key(None, "psf") == "psf.cube"
