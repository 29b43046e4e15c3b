"""End to end through both command lines: a tiny sweep is collected into MLflow, ranked, and reported."""

from __future__ import annotations

import json
import re

from analyze.cli import main as analyze_main
from collect.cli import main as collect_main

SPEC = """
name = "e2e"
seeds = [0]
measures = ["margins", "norms"]
[base.data]
dataset = "digits"
n_train = 80
n_test = 60
[base.model]
arch = "fcn"
width = 16
depth = 1
[base.optim]
lr = 0.1
batch_size = 16
[base.stop]
max_epochs = 3
[grid]
"optim.batch_size" = [8, 80]
"model.dropout" = [0.0, 0.3]
"""


def test_collect_then_rank_then_report(tmp_path, mlflow_uri, capsys):
    spec = tmp_path / "e2e.toml"
    spec.write_text(SPEC)
    assert collect_main(["--config", str(spec), "--tracking-uri", mlflow_uri, "--device", "auto", "--no-progress"]) == 0
    assert "4 finished, 0 failed" in capsys.readouterr().out

    # a second invocation resumes: nothing left to do
    assert collect_main(["--config", str(spec), "--tracking-uri", mlflow_uri, "--no-progress"]) == 0
    assert "0 finished, 0 failed, 4 already done" in capsys.readouterr().out

    out = tmp_path / "rank.json"
    assert analyze_main(["rank", "--tracking-uri", mlflow_uri, "--format", "json", "--out", str(out), "--resamples", "0"]) == 0
    ranked = json.loads(out.read_text())
    names = json.dumps(ranked)
    assert "measure.margin_mean" in names and "measure.l2_norm" in names

    html_path = tmp_path / "report.html"
    assert analyze_main(["report", "--tracking-uri", mlflow_uri, "--out", str(html_path), "--resamples", "50"]) == 0
    html = html_path.read_text()
    assert "flatlas report: e2e" in html
    assert "measure.margin_mean" in html and "gen.gap_acc" in html
    assert "4 finished" in html or "4 runs" in html
    declared = int(re.search(r'data-charts="(\d+)"', html).group(1))
    assert declared == html.count("class='chart'") + html.count('class="chart"') and declared > 3
    from analyze.report.page import vega_bundle

    head = vega_bundle()[:400]
    assert html.count(head) == 1  # the Vega bundle is inlined exactly once, not per chart
    assert "<script src=" not in html and "https://cdn" not in html  # nothing fetched from the network
    # a report written elsewhere (--out) is not the sweep's own: nothing is attached to the sweep's parent run
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    exp = client.get_experiment_by_name("e2e")
    parents = client.search_runs([exp.experiment_id], filter_string="tags.`flatlas.kind` = 'sweep'")
    assert parents and all(client.list_artifacts(r.info.run_id, "report") == [] for r in parents)
