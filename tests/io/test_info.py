"""``hetacumn info`` run in-process: counts, box and pixel sizes, CTF, poses, missing stacks."""

from __future__ import annotations

import numpy as np

from hetacumn.cli.main import main
from hetacumn.io.mrc import write_mrc


def _info(capsys, *args) -> tuple[int, dict[str, str], str]:
    code = main(["info", *map(str, args)])
    out = capsys.readouterr().out
    fields = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line and not line.startswith(" "))
    return code, fields, out


def test_info_relion31(capsys, interop_dir):
    code, fields, _ = _info(capsys, interop_dir / "relion31.star")
    assert code == 0
    assert fields["images"] == "5"
    assert fields["box size"] == "256 px (hetacumn train --box auto trains on them Fourier-cropped to 64 px on the " \
                                 "CPU and 128 px on a GPU)"
    assert fields["pixel size"] == "2.8060 Å (optics group 1 (opticsGroup1))"
    assert fields["CTF"].startswith("present; defocus U 12506.0 to 13108.1 Å")
    assert fields["poses"].startswith("present") and fields["CTF premultiplied"] == "no"
    assert fields["stack files"] == "1 (all found)"


def test_info_cryosparc_with_missing_stacks(capsys, interop_dir):
    code, fields, out = _info(capsys, interop_dir / "cryosparc_P12_J24_001_particles.cs")
    assert code == 0
    assert fields["format"] == "cryoSPARC .cs"
    assert fields["images"] == "2019" and fields["pixel size"] == "2.9500 Å"
    assert fields["box size"].startswith("180 px (hetacumn train --box auto trains on them Fourier-cropped to 64 px")
    assert fields["stack files"] == "50, 50 missing:" and out.count("  missing: ") == 10
    assert fields["blob/sign (not applied)"] == "-1"


def test_info_star_with_a_missing_stack_and_no_ctf(capsys, tmp_path):
    write_mrc(tmp_path / "here.mrcs", np.zeros((3, 8, 8), np.float32), 2.0)
    star = tmp_path / "p.star"
    star.write_text("data_\n\nloop_\n_rlnImageName\n_rlnImagePixelSize\n1@here.mrcs 2.0\n3@here.mrcs 2.0\n2@gone.mrcs 2.0\n")
    code, fields, out = _info(capsys, star)
    assert code == 0
    assert fields["images"] == "3" and fields["box size"] == "8 px" and fields["pixel size"] == "2.0000 Å"
    assert fields["CTF"].startswith("absent (missing rlnDefocusU")
    assert fields["stack files"] == "2, 1 missing:"
    assert f"  missing: {tmp_path / 'gone.mrcs'}" in out.splitlines()


def test_info_reports_premultiplied_and_datadir(capsys, interop_dir):
    code, fields, _ = _info(capsys, interop_dir / "relion5.star", "--datadir", interop_dir / "toy_datadir")
    assert code == 0 and fields["images"] == "17" and fields["box size"] == "30 px"
    assert fields["pixel size"].startswith("0.8900 Å") and fields["CTF premultiplied"] == "no"
    assert fields["stack files"] == "2 (all found)"


def test_info_error_is_one_line_with_status_2(capsys, tmp_path):
    (tmp_path / "p.star").write_text("data_\n\nloop_\n_rlnDefocusU\n1.0\n")
    assert main(["info", str(tmp_path / "p.star")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"hetacumn: error: {tmp_path / 'p.star'}: no rlnImageName column: not a particle STAR file"


def test_info_reports_premultiplied_flag(capsys, tmp_path):
    write_mrc(tmp_path / "s.mrcs", np.zeros((2, 8, 8), np.float32), 1.0)
    star = tmp_path / "p.star"
    star.write_text("data_optics\n\nloop_\n_rlnOpticsGroup\n_rlnImagePixelSize\n_rlnCtfDataAreCtfPremultiplied\n1 1.25 1\n\n"
                    "data_particles\n\nloop_\n_rlnImageName\n_rlnOpticsGroup\n1@s.mrcs 1\n2@s.mrcs 1\n")
    code, fields, _ = _info(capsys, star)
    assert code == 0 and fields["CTF premultiplied"] == "yes" and fields["pixel size"].startswith("1.2500 Å")


def test_info_reports_the_particle_contrast(capsys, interop_dir):
    fields = {name: _info(capsys, interop_dir / name)[1]["particle contrast"]
              for name in ("empiar_10076_7.star", "toy_projections.star", "cryosparc_P12_J24_001_particles.cs")}
    # the 7 real EMPIAR-10076 particles are dark (-6.9), cryoDRGN's toy projections white (+278.1)
    assert fields["empiar_10076_7.star"].startswith("dark particles")
    assert fields["empiar_10076_7.star"].endswith("-6.9 standard errors; train inverts them (--contrast auto)")
    assert fields["toy_projections.star"] == ("white particles (RELION's convention), centre minus mean +278.1 "
                                              "standard errors")
    assert fields["cryosparc_P12_J24_001_particles.cs"] == "unknown (stack files missing)"
