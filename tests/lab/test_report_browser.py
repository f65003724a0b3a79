"""The HTML report loads in headless Chromium with every tip section and image (slow).

The report opens with the verdict of every tip and the forest plot of every primary comparison,
then one section per experiment, each with its figure.
"""

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
  const forest = document.querySelector('img[alt="forest"]');
  const fok = forest && forest.complete && forest.naturalWidth > 0 ? 1 : 0;
  const tips = document.querySelectorAll('#tips + p + table tr').length;
  document.title = 'PROBE sections=' + secs + ' images=' + imgs.length + ' decoded=' + ok +
    ' forest=' + fok + ' tiprows=' + tips;
});
</script></body>"""


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
def test_report_in_headless_chromium(tmp_path):
    from dltricks.lab.experiment import list_experiments
    from dltricks.lab.report import write_report
    from dltricks.lab.runner import run_experiment, run_lab
    from tests.lab.test_results import tiny_experiments

    ids = [e.id for e in list_experiments()]
    run_lab(list_experiments(), "smoke", tmp_path, progress=False)
    # one small experiment with 3 seeds gives the forest plot intervals to draw
    fair = tiny_experiments()[0]
    run_experiment(fair, "quick", tmp_path)
    write_report(tmp_path)
    ids.append(fair.id)
    page = tmp_path / "probe.html"
    page.write_text((tmp_path / "report.html").read_text().replace("</body>", _PROBE))
    dom = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    ).stdout
    m = re.search(r"PROBE sections=(\d+) images=(\d+) decoded=(\d+) forest=(\d) "
                  r"tiprows=(\d+)", dom)
    assert m, dom[:500]
    assert int(m.group(1)) == len(ids)
    assert int(m.group(2)) == int(m.group(3)) == len(ids)
    assert int(m.group(4)) == 1  # the forest plot decoded
    assert int(m.group(5)) > 1  # the per-tip table opens the report
    assert dom.index("Verdict per tip") < dom.index('id="tip-')
    for i in ids:
        assert f'id="tip-{i}"' in dom
