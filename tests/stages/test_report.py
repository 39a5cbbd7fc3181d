import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from report_inputs import HOSTILE_LABEL, HOSTILE_SOURCE, write_report_inputs

from stages import report
from stages.core.tracking import log_evaluation_run
from stages.reporting.inputs import load_inputs

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts"
HEADER = {"data version": "0123456789ab", "git commit": "abc (working tree differs from it)"}


@pytest.fixture
def input_paths(tmp_path: Path) -> dict[str, Path]:
    return write_report_inputs(tmp_path / "inputs")


def render(paths: dict[str, Path], **config) -> str:
    return report.render_report(load_inputs(paths), report.ReportConfig(**config), HEADER)


class Sections(HTMLParser):
    """Collects each section's id and its text."""

    def __init__(self):
        super().__init__()
        self.text: dict[str, list[str]] = {}
        self.current: str | None = None
        self.depth = 0

    def handle_starttag(self, tag, attrs):
        if tag == "section":
            self.current = dict(attrs).get("id")
            self.text[self.current] = []
            self.depth = 0
        elif self.current is not None:
            self.depth += 1

    def handle_endtag(self, tag):
        if tag == "section":
            self.current = None

    def handle_data(self, data):
        if self.current is not None:
            self.text[self.current].append(data)


def sections_of(html: str) -> dict[str, str]:
    parser = Sections()
    parser.feed(html)
    return {name: " ".join(parts) for name, parts in parser.text.items()}


# Elements and attributes through which a page loads something. Data text may contain the same
# words, so the check reads the parsed tags rather than the page's text.
LOADING_TAGS = {"script", "link", "img", "image", "iframe", "frame", "object", "embed", "audio", "video"}
LOADING_TAGS |= {"source", "track", "base", "use", "feimage"}
URL_ATTRIBUTES = {
    "src",
    "href",
    "xlink:href",
    "srcset",
    "action",
    "formaction",
    "poster",
    "data",
    "background",
}


class Resources(HTMLParser):
    """Collects every tag, attribute or style rule of a page that would make a browser load a resource."""

    def __init__(self):
        super().__init__()
        self.found: list[str] = []
        self.in_style = False

    def handle_starttag(self, tag, attrs):
        if tag in LOADING_TAGS:
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            if name in URL_ATTRIBUTES and not (value or "").startswith("#"):
                self.found.append(f"<{tag} {name}={value!r}>")
            if name == "style":
                self.check_css(value or "")
            if tag == "meta" and name == "http-equiv" and (value or "").lower() == "refresh":
                self.found.append("<meta http-equiv=refresh>")
        self.in_style = tag == "style"

    def handle_endtag(self, tag):
        if tag == "style":
            self.in_style = False

    def handle_data(self, data):
        if self.in_style:
            self.check_css(data)

    def check_css(self, css: str):
        self.found += re.findall(r"url\s*\(|@import", css, re.IGNORECASE)


def external_resources(html: str) -> list[str]:
    parser = Resources()
    parser.feed(html)
    return parser.found


def test_report_renders_every_section_with_data(input_paths):
    html = render(input_paths)

    found = sections_of(html)
    assert list(found) == report.SECTION_IDS
    for name, content in found.items():
        assert "no data" not in content, name
        assert "not found" not in content, name
        assert "not measured" not in content, name
    assert "0123456789ab" in html  # data version in the header


def test_report_shows_the_figures_of_each_section(input_paths):
    found = sections_of(render(input_paths))

    assert "banking77-train" in found["sources"]
    assert "imbalance ratio" in found["classes"]
    assert "median chars" in found["lengths"]
    assert "augment: near_duplicate" in found["quarantine"]
    assert re.search(r"curate: curated rows:\s+failed", found["expectations"])
    assert re.search(r"split: split tables:\s+passed", found["expectations"])
    assert "values_redacted.email" in found["pii"]
    assert "69.0%" in found["splits"]  # 80 of 116 rows in train
    assert "The leakage gate passed." in found["leakage"]
    assert "resplits.macro_f1" in found["stability"]
    assert "with augmentation" in found["augmentation"]
    assert "0.91" in found["models"]
    assert "validation scores per epoch" in found["training"]
    assert "sorted by the adapter F1" in found["per-class"]
    assert "card_arrival" in found["confusion"]
    assert "within limit" in found["forgetting"]


def test_report_escapes_untrusted_text(input_paths):
    html = render(input_paths)

    assert HOSTILE_LABEL not in html
    assert HOSTILE_SOURCE not in html
    assert "&lt;script&gt;alert(&quot;label&quot;)&lt;/script&gt;" in html
    assert "tickets&lt;img src=x onerror=alert(1)&gt;" in html


def test_report_loads_no_external_resource(input_paths):
    html = render(input_paths)

    assert external_resources(html) == []
    assert "default-src 'none'" in html  # the browser blocks any load that slips in
    # The check itself finds a resource when there is one.
    assert external_resources('<p><img src="https://x.invalid/a.png"></p>') == [
        "<img>",
        "<img src='https://x.invalid/a.png'>",
    ]
    assert external_resources("<style>p { background: url(x.png) }</style>") == ["url("]
    assert external_resources("<p>a text about &lt;img src=x&gt;</p>") == []


def test_report_without_inputs_notes_each_missing_section():
    html = report.render_report(load_inputs({}), report.ReportConfig(), HEADER)

    found = sections_of(html)
    assert list(found) == report.SECTION_IDS
    for name, content in found.items():
        assert re.search(r"not given|no data|not measured|no stage metrics", content), name


def test_report_notes_unreadable_metrics_file(input_paths):
    input_paths["split_metrics"].write_text("{ not json")

    found = sections_of(render(input_paths))

    assert "unreadable" in found["leakage"]
    assert "imbalance ratio" in found["classes"]  # other sections still render


def test_report_survives_unexpected_metrics_shapes(input_paths):
    input_paths["split_metrics"].write_text(
        json.dumps(
            {"sizes": {"train": "many"}, "leakage": {"pairs": {"train_vs_test": "odd"}}, "stability": [1]}
        )
    )
    input_paths["evaluate_metrics"].write_text(json.dumps({"models": {"adapter": "broken"}}))

    found = sections_of(render(input_paths))

    assert "train_vs_test" not in found["leakage"]
    assert "adapter" in found["models"]


def test_report_is_deterministic(input_paths):
    assert render(input_paths) == render(input_paths)


def write_params(folder: Path, **report_params) -> None:
    params = {
        "evaluate": {"experiment": "report-test", "data_inputs": ["inputs/split"]},
        "report": report_params,
    }
    (folder / "params.yaml").write_text(yaml.safe_dump(params))


def report_argv(paths: dict[str, Path], out: str) -> list[str]:
    argv = []
    for name, path in paths.items():
        argv += [f"--{name.replace('_', '-')}", str(path)]
    return [*argv, "--out", out]


def test_report_stage_attaches_page_to_evaluation_run(input_paths, tmp_path: Path, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    write_params(tmp_path)
    run_id = log_evaluation_run(
        root=tmp_path,
        experiment="report-test",
        run_name="evaluate-classification",
        params={},
        metrics={"models": {"adapter": {"macro_f1": 0.9}}},
        data_inputs=["inputs/split"],
    )

    report.main(report_argv(input_paths, "reports/report.html"))

    html = (tmp_path / "reports" / "report.html").read_text(encoding="utf-8")
    assert list(sections_of(html)) == report.SECTION_IDS
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    artifacts = [item.path for item in mlflow.artifacts.list_artifacts(run_id=run_id, artifact_path="report")]
    assert artifacts == ["report/report.html"]
    runs = mlflow.search_runs(experiment_names=["report-test"])
    assert len(runs) == 1
    version = runs.iloc[0]["tags.data_version"]
    assert version in html


def test_report_stage_logs_own_run_without_evaluation(input_paths, tmp_path: Path, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    write_params(tmp_path)

    report.main(report_argv(input_paths, "report.html"))

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(experiment_names=["report-test"])
    assert runs["tags.mlflow.runName"].tolist() == ["report"]
    assert runs.iloc[0]["tags.kind"] == "report"
    assert runs.iloc[0]["tags.data_version"]


def test_report_stage_can_skip_mlflow(input_paths, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    write_params(tmp_path, log_to_mlflow=False)

    report.main(report_argv(input_paths, "report.html"))

    assert (tmp_path / "report.html").is_file()
    assert not (tmp_path / "mlflow.db").exists()


def find_chromium() -> str | None:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


# No first-run UI, background services or DNS: the browser itself contacts no host, so the only
# requests in its network log are the page's own.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--no-pings",
    "--disable-domain-reliability",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--hide-scrollbars",
]


def run_chromium(chromium: str, page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def page_requests(net_log: Path) -> list[str]:
    """Return the URLs requested on behalf of a page opened from a file (not by the browser itself)."""
    log = json.loads(net_log.read_text(encoding="utf-8"))
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for event in log["events"]:
        params = event.get("params") or {}
        if event["type"] == start_job and str(params.get("network_isolation_key", "")).startswith("file://"):
            urls.append(params["url"])
    return urls


@pytest.mark.chromium
def test_report_renders_in_chromium(input_paths, tmp_path: Path):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium)")
    page = tmp_path / "report.html"
    page.write_text(render(input_paths), encoding="utf-8")

    dom = run_chromium(
        chromium, page, tmp_path / "profile", f"--log-net-log={tmp_path / 'net.json'}", "--dump-dom"
    )
    found = sections_of(dom.stdout)
    assert list(found) == report.SECTION_IDS
    for name, content in found.items():
        assert len(content.strip()) > 40, name
    assert "<svg" in dom.stdout
    assert page_requests(tmp_path / "net.json") == []

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "report.png"
    screenshot.unlink(missing_ok=True)
    run_chromium(
        chromium, page, tmp_path / "profile", f"--screenshot={screenshot}", "--window-size=1280,4000"
    )
    assert screenshot.stat().st_size > 10_000


@pytest.mark.chromium
def test_network_log_check_sees_page_requests(tmp_path: Path):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium)")
    page = tmp_path / "control.html"
    # A reserved .invalid name: with DNS switched off, the request fails before any connection.
    page.write_text(
        '<!DOCTYPE html><img src="https://resource.invalid/a.png"><p>control</p>', encoding="utf-8"
    )

    run_chromium(chromium, page, tmp_path / "profile", f"--log-net-log={tmp_path / 'net.json'}", "--dump-dom")

    assert page_requests(tmp_path / "net.json") == ["https://resource.invalid/a.png"]
