"""write_report makes one self-contained HTML file: every figure embedded byte for byte, text escaped,
nothing external; headless Chromium loads every image with no errors and no blocked request."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from hetacumn.analysis.plots import Figure, make_plots
from hetacumn.analysis.report import Section, Table, handedness_note, write_report
from hetacumn.errors import InputError
from tests.analysis.test_plots import synthetic_inputs

DATA_URI = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
# Added to a copy of the report only: counts loaded images, window errors and policy violations.
PROBE = """<script>
var errors = 0, violations = 0;
window.addEventListener("error", function () { errors++; }, true);
document.addEventListener("securitypolicyviolation", function () { violations++; });
window.addEventListener("load", function () {
  var loaded = 0;
  for (const image of document.images) { if (image.complete && image.naturalWidth > 0) loaded++; }
  document.title = "images=" + loaded + "/" + document.images.length + " errors=" + errors +
                   " violations=" + violations;
});
</script>"""


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, list[Figure]]:
    outdir = tmp_path_factory.mktemp("analysis")
    figures = make_plots(outdir / "plots", synthetic_inputs(n=2_000))
    sections = [
        Section("Summary <1>", "Classes: a < b & c > d.\n\n<script>alert(1)</script> run `hetacumn analyze`",
                tables=[Table("Class sizes", ["class", "particles", "fraction"], [[0, 1003, 0.5015], [1, 997, 1 / 3]])]),
        Section("Latent space", figures=figures[:6]),
        Section("Volumes and errors", "Per class.", figures=figures[6:]),
        handedness_note(),
    ]
    return write_report(outdir / "report.html", "Run <A> & B", sections), figures


def test_every_figure_is_embedded_byte_for_byte(report):
    path, figures = report
    text = path.read_text(encoding="utf-8")
    embedded = DATA_URI.findall(text)
    assert text.count("data:image/png;base64,") == len(embedded) == len(figures) == 12
    assert [base64.b64decode(data) for data in embedded] == [figure.path.read_bytes() for figure in figures]
    assert [f"Figure {i}." in text for i in range(1, 13)] == [True] * 12


def test_nothing_external_and_text_escaped(report):
    text = report[0].read_text(encoding="utf-8")
    for forbidden in ('src="http', "href=\"http", "<script", "@import", "url(", "<link"):
        assert forbidden not in text.lower()
    assert "<title>Run &lt;A&gt; &amp; B</title>" in text
    assert "Classes: a &lt; b &amp; c &gt; d." in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; run <code>hetacumn analyze</code>" in text
    assert "<td>0.3333</td>" in text and "<td>0.5015</td>" in text and "<td>1003</td>" in text
    assert re.findall(r'<a href="#(section-\d)">', text) == ["section-1", "section-2", "section-3", "section-4"]
    assert all(f'id="section-{i}"' in text for i in range(1, 5))
    assert "<h2>Summary &lt;1&gt;</h2>" in text
    assert "<code>hetacumn volume --flip</code>" in text and "arbitrary" in handedness_note().text


def test_missing_or_non_png_figure_is_an_input_error(tmp_path):
    missing = Figure("gone", tmp_path / "gone.png", "")
    with pytest.raises(InputError, match="gone.png: cannot read figure"):
        write_report(tmp_path / "r.html", "r", [Section("s", figures=[missing])])
    (tmp_path / "fake.png").write_text("not an image")
    with pytest.raises(InputError, match="fake.png: figure is not a PNG image"):
        write_report(tmp_path / "r.html", "r", [Section("s", figures=[Figure("fake", tmp_path / "fake.png", "")])])


def _probe_in_chromium(chromium: str, page: Path, profile: Path) -> str:
    command = [chromium, "--headless", "--disable-gpu", "--no-sandbox", f"--user-data-dir={profile}",
               "--virtual-time-budget=10000", "--dump-dom", page.as_uri()]
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)
    titles = re.findall(r"<title>([^<]*)</title>", result.stdout)
    assert titles, f"no DOM from chromium (exit {result.returncode}): {result.stderr[-500:]}"
    return titles[0]


def test_chromium_loads_every_image_offline(report, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium); needed for the browser check")
    path, figures = report
    text = path.read_text(encoding="utf-8")
    policy = "style-src 'unsafe-inline'"
    assert text.count(policy) == 1
    # The copy keeps the report's policy (no external loads) and only allows the inline probe to run.
    probed = text.replace(policy, policy + "; script-src 'unsafe-inline'").replace("<head>", "<head>\n" + PROBE, 1)
    good = tmp_path / "probed.html"
    good.write_text(probed, encoding="utf-8")
    assert _probe_in_chromium(chromium, good, tmp_path / "profile") == f"images={len(figures)}/{len(figures)} errors=0 violations=0"
    # Control: an external image is blocked and a corrupt one fails, so the probe can see both.
    bad = tmp_path / "control.html"
    bad.write_text(probed.replace("</body>", '<img src="http://example.com/a.png"><img src="data:image/png;base64,AAAA"></body>'),
                   encoding="utf-8")
    assert _probe_in_chromium(chromium, bad, tmp_path / "profile") == f"images={len(figures)}/{len(figures) + 2} errors=2 violations=1"
