"""``analyze`` gives the same answers whether or not torch can be imported.

Which ledger columns are measures or diagnostics, and the sign the literature expects of each measure, come from the
torch-free ``collect.catalog``. Here the whole analysis (ledger file → ranking, flags, verdict) runs twice in fresh
interpreters — once with an import hook that makes ``torch`` unimportable — and must print the same frames. The
ledger uses registry names (``measure.margin_q10``: expected −1; ``measure.sharpness``: +1; the diagnostic
``sharpness_n_restarts`` logged under ``measure.``), so the comparison would expose a lost kind or direction.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.analyze.synthetic import synthetic_ledger

BLOCK_TORCH = """
import importlib.abc, importlib.machinery, sys
class _NoTorch(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    # finds torch (so a library probing for it sees it installed) but every import of it fails, as a broken install
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            return importlib.machinery.ModuleSpec(name, self)
        return None
    def create_module(self, spec):
        raise ImportError(f"{spec.name} is blocked by the test")
    def exec_module(self, module):
        raise ImportError(f"{module.__name__} is blocked by the test")
sys.meta_path.insert(0, _NoTorch())
"""

ANALYSE = """
import json, sys
from pathlib import Path
from analyze.ledger import finished, load_file, metric_column, prepare
from analyze.stats import report_frames
ledger = load_file(Path(sys.argv[1]))
prepared = prepare(finished(ledger), target="gen.gap_acc")
frames, notes = report_frames(prepared.ledger, target="gen.gap_acc", resamples=40, seed=0)
out = {name: frames[name].to_dicts() for name in ("rank", "flags", "verdict_matrix", "verdict_sentences")}
out["metric_column"] = metric_column("measure/sharpness_n_restarts")
out["torch_loaded"] = "torch" in sys.modules
print(json.dumps(out, sort_keys=True, default=str))
"""


def _analyse(ledger_csv: Path, block_torch: bool) -> dict:
    code = (BLOCK_TORCH if block_torch else "") + ANALYSE
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code, str(ledger_csv)], capture_output=True, text=True, timeout=600,
                         cwd=root)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_analysis_is_the_same_without_torch(tmp_path: Path) -> None:
    ledger = synthetic_ledger(n_seeds=3, n_noise=1, seed=3).rename(
        {"measure.planted": "measure.margin_q10", "measure.noise_0": "measure.sharpness"})
    ledger = ledger.with_columns((ledger["measure.sharpness"] * 0 + 12.0).alias("measure.sharpness_n_restarts"))
    path = tmp_path / "ledger.csv"
    ledger.write_csv(path)

    without = _analyse(path, block_torch=True)
    with_torch = _analyse(path, block_torch=False)

    assert without["torch_loaded"] is False
    for key in ("rank", "flags", "verdict_matrix", "verdict_sentences", "metric_column"):
        assert without[key] == with_torch[key], key
    # the catalog's facts reached the answers (so the equality above is not between two blind analyses)
    ranked = {row["measure"]: row for row in without["rank"]}
    assert "measure.sharpness_n_restarts" not in ranked and "diag.sharpness_n_restarts" not in ranked
    assert ranked["measure.margin_q10"]["expected_sign"] == -1 and ranked["measure.sharpness"]["expected_sign"] == 1
    assert without["metric_column"] == "diag.sharpness_n_restarts"
    assert without["flags"], "the planted reversal should raise at least one flag"
