"""``hetacumn demo``: simulate, train ab initio, analyse against the truth, print what was reached beside what
the true poses give; a second run into the same folder is refused without touching it."""

from __future__ import annotations

import json
import re

from hetacumn.cli.main import main
from tests.cli.helpers import snapshot, visible_lines

# 1,500 images at 32 px and SNR 10, the search stage throughout 8 epochs (measured: 10.3 deg, confusion 0.49,
# class maps 2.9 / 3.0 px); the true-pose backprojection of each class reaches 2.0 px (Nyquist).
ARGS = ["--n-images", "1500", "--box", "32", "--snr", "10", "--epochs", "8", "--search-images", "100000", "--device", "cpu"]
ROW = re.compile(r"^\s*(\d+)\s+(\d+)\s+([\d.]+) /\s*([\d.]+)\s+(?:([\d.]+) /\s*([\d.]+)|\(no k-means class\))$")
AB_INITIO = re.compile(r"^ab initio: median rotation error ([\d.]+) deg \((\w+) hand\), median shift error ([\d.]+) px, "
                       r"confusion error ([\d.]+)$")


def test_demo_trains_reports_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), *ARGS]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [m for m in map(ROW.match, lines) if m]
    assert [int(m[1]) for m in rows] == [0, 1]
    assert sum(int(m[2]) for m in rows) == 1500 and min(int(m[2]) for m in rows) > 650
    for m in rows:
        assert 2.0 <= float(m[4]) <= float(m[3]) < 2.5  # the data's limit: true poses
    (ab_initio,) = [m for m in map(AB_INITIO.match, lines) if m]
    truth = json.loads((out / "analyze" / "summary.json").read_text())["truth"]
    assert float(ab_initio[1]) == round(truth["rotation"]["median_angle_deg"], 2)
    assert float(ab_initio[4]) == round(truth["latent"]["confusion_error"], 3)
    assert float(ab_initio[1]) < 20

    before = snapshot(out)
    assert main(["demo", "-o", str(out), *ARGS, "--seed", "1"]) == 2
    err = capsys.readouterr().err
    message = f"hetacumn: error: {out}: output directory exists and is not empty (use --overwrite to replace it)"
    assert visible_lines(err) == [message]
    assert "Traceback" not in err
    assert snapshot(out) == before
