"""The ``latentwatch`` command as a user runs it: real processes, real files."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from service.calibration import score_threshold
from service.sample_data import make_sample

QUICK = ["--max-steps", "200", "--warmup-steps", "50", "--quiet"]


def latentwatch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", *args], capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def sample_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "telemetry.csv"
    make_sample(600, seed=1).to_csv(path, index=False)
    return path


@pytest.mark.slow
def test_train_with_no_options_on_a_numeric_csv(tmp_path: Path) -> None:
    numeric = make_sample(600, seed=2).select_dtypes("number").drop(columns=["label"])  # 3 folds: 500 rows or more
    numeric.to_csv(tmp_path / "numbers.csv", index=False)
    result = latentwatch("train", "--data", str(tmp_path / "numbers.csv"), "--out", str(tmp_path / "b"), "--quiet")
    assert result.returncode == 0, result.stderr
    assert "trained vae 'numbers'" in result.stdout
    assert re.search(r"[0-9.]+ s on (cpu|cuda)\n", result.stdout)
    page = (tmp_path / "b" / "report" / "index.html").read_text(encoding="utf-8")
    # The report's threshold is the service's: the score above which p < alpha.
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text(encoding="utf-8"))
    calibration, history = manifest["calibration"], manifest["training"]["history"]
    threshold = score_threshold(np.asarray(calibration["scores"]), calibration["alpha"])
    shown = re.search(r'<th scope="row">threshold</th><td class="value">([^<]+)</td>', page)
    assert shown is not None
    assert float(shown.group(1)) == pytest.approx(threshold, rel=1e-5)
    epochs = re.search(r'<th scope="row">epochs</th><td class="value">([^<]+)</td>', page)
    steps = re.search(r'<th scope="row">gradient steps</th><td class="value">([^<]+)</td>', page)
    assert epochs is not None
    assert steps is not None
    # The last validation check's epoch and step, not the count of checks.
    assert int(epochs.group(1)) == history[-1]["epoch"]
    assert int(steps.group(1)) == history[-1]["step"]
    assert len(history) != history[-1]["epoch"]


@pytest.mark.slow
def test_train_parquet_with_categories_and_missing_values_then_info_and_evaluate(
    tmp_path: Path, sample_csv: Path
) -> None:
    frame = make_sample(600, seed=1)
    frame.to_parquet(tmp_path / "t.parquet")
    assert frame["site"].isna().any()
    trained = latentwatch(
        "train", "--data", str(tmp_path / "t.parquet"), "--out", str(tmp_path / "b"),
        "--label-column", "label", "--exclude", "machine_id", "--restarts", "2", "--folds", "2", *QUICK,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert "restarts' validation losses:" in trained.stdout
    assert "2 members, one per fold, scored as their mixture" in trained.stdout
    info = latentwatch("info", str(tmp_path / "b"))
    assert info.returncode == 0, info.stderr
    assert "site" in info.stdout
    assert "neg_elbo" in info.stdout
    evaluated = latentwatch(
        "evaluate", "--model", str(tmp_path / "b"), "--data", str(sample_csv), "--label-column", "label"
    )
    assert evaluated.returncode == 0, evaluated.stderr
    assert "ROC-AUC" in evaluated.stdout
    assert "false-positive rate" in evaluated.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--data", "{tmp}/nope.csv", "--out", "{tmp}/b"], "nope.csv: no such file or folder"),
        (["train", "--data", "{csv}", "--out", "{tmp}/b", "--label-column", "target"], "label column(s) ['target']"),
        (["train", "--data", "{csv}", "--out", "{tmp}/b", "--alpha", "2"], "'alpha': 2.0 must be a number between"),
        (["info", "{tmp}"], "manifest.json is missing"),
        (["evaluate", "--model", "{tmp}/none", "--data", "{csv}", "--label-column", "label"], "no such bundle"),
    ],
)
@pytest.mark.slow
def test_user_mistakes_get_one_line_and_no_traceback(
    tmp_path: Path, sample_csv: Path, args: list, message: str
) -> None:
    result = latentwatch(*[a.format(tmp=tmp_path, csv=sample_csv) for a in args])
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_the_serving_side_never_imports_torch() -> None:
    """Every module of the ``service`` package imports without torch, training or sklearn."""
    code = (
        "import importlib, pkgutil, sys, service, service.cli\n"
        "names = [m.name for m in pkgutil.walk_packages(service.__path__, 'service.')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "service.cli.build_parser()\n"
        "bad = {m.split('.')[0] for m in sys.modules} & {'torch', 'training', 'sklearn'}\n"
        "assert not bad, sorted(bad)\n"
        "print(len(names))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 40  # the walk found the whole package, subpackages included


@pytest.mark.slow
def test_train_without_torch_names_the_extra_to_install(tmp_path: Path, sample_csv: Path) -> None:
    blocker = (
        "import sys, importlib.abc\n"
        "class NoTorch(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "from service.cli import main\n"
        f"sys.exit(main(['train', '--data', {str(sample_csv)!r}, '--out', {str(tmp_path / 'b')!r}]))\n"
    )
    result = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "pip install 'latentwatch[train]'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_stopped_fit_leaves_no_temporary_folder_and_the_earlier_bundle_untouched(
    sample_csv: Path, tmp_path: Path
) -> None:
    out = tmp_path / "b"
    assert latentwatch("train", "--data", str(sample_csv), "--out", str(out), *QUICK).returncode == 0
    before = (out / "manifest.json").read_bytes()
    command = [sys.executable, "-m", "service", "train", "--data", str(sample_csv), "--out", str(out)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    for line in process.stderr:  # plain progress lines: not a terminal
        if line.startswith("fitting"):
            break
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "interrupted" in stderr
    assert (out / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


@pytest.mark.slow
def test_a_step_cap_within_the_warm_up_is_refused_before_training(sample_csv: Path, tmp_path: Path) -> None:
    result = latentwatch("train", "--data", str(sample_csv), "--out", str(tmp_path / "b"), "--max-steps", "100")
    assert result.returncode == 2
    assert "within the KL warm-up" in result.stderr
    assert "Traceback" not in result.stderr
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["score", "--mdoel", "b", "--input", "i.csv", "--output", "o.parquet"], "--mdoel (did you mean '--model'?)"),
        (["train", "--dta", "x.csv", "--out", "b"], "--dta (did you mean '--data'?)"),
        (["--verbsoe", "info", "b"], "--verbsoe (did you mean '--verbose'?)"),
        (["score", "--model", "b", "--input", "i.csv", "--output", "o.parquet", "--explian=1"], "--explian"),
    ],
)
@pytest.mark.slow
def test_a_misspelled_option_is_named_with_a_suggestion(args: list[str], says: str) -> None:
    result = latentwatch(*args)
    assert result.returncode == 2
    assert f"error: unrecognized argument: {says}" in result.stderr
    assert "required" not in result.stderr
    assert "Traceback" not in result.stderr
