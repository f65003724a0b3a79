"""The HTML report loads in headless Chromium with every tip section and image (slow)."""

import re
import subprocess
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")

_PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.querySelectorAll('section.tip img')];
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  const secs = document.querySelectorAll('section.tip').length;
  document.title = 'PROBE sections=' + secs + ' images=' + imgs.length + ' decoded=' + ok;
});
</script></body>"""


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
def test_report_in_headless_chromium(tmp_path):
    from dltricks.lab.experiment import list_experiments
    from dltricks.lab.runner import run_lab

    ids = [e.id for e in list_experiments()]
    run_lab(list_experiments(), "smoke", tmp_path, progress=False)
    page = tmp_path / "probe.html"
    page.write_text((tmp_path / "report.html").read_text().replace("</body>", _PROBE))
    dom = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    ).stdout
    m = re.search(r"PROBE sections=(\d+) images=(\d+) decoded=(\d+)", dom)
    assert m, dom[:500]
    assert int(m.group(1)) == len(ids)
    assert int(m.group(2)) == int(m.group(3)) == len(ids)
    for i in ids:
        assert f'id="tip-{i}"' in dom
