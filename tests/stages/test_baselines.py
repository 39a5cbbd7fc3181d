from pathlib import Path

import pandas as pd
import pytest
import yaml

from stages import baselines
from stages.core import schema as S
from stages.core.errors import ParamsError
from stages.core.io import read_table


def test_majority_breaks_ties_by_label_order():
    model = baselines.MajorityClassifier().fit(["a", "b", "c", "d"], ["zeta", "alpha", "zeta", "alpha"])
    assert model.label_ == "alpha"
    assert model.predict(["x", "y"]) == ["alpha", "alpha"]


def test_keyword_rules_count_whole_words():
    model = baselines.KeywordClassifier(
        {"change_pin": ["pin"], "card_arrival": ["card", "arrive"]}, fallback="other"
    )
    assert model.predict(["How do I change my PIN?"]) == ["change_pin"]
    assert model.predict(["My card did not arrive"]) == ["card_arrival"]
    assert model.predict(["spinning wheel"]) == ["other"]


def test_keyword_tie_goes_to_first_rule():
    model = baselines.KeywordClassifier({"first": ["card"], "second": ["pin"]}, fallback="none")
    assert model.predict(["card pin"]) == ["first"]


def test_keyword_rules_reject_unknown_labels(small_splits):
    config = baselines.BaselinesConfig(keyword_rules={"no_such_intent": ["x"]})
    with pytest.raises(ParamsError, match=r"baselines\.keyword_rules.*no_such_intent"):
        baselines.fit_baselines(small_splits["train"], config, seed=0)


def test_keyword_baseline_skipped_without_rules(small_splits, caplog):
    caplog.set_level("INFO")
    models = baselines.fit_baselines(small_splits["train"], baselines.BaselinesConfig(), seed=0)
    assert "keywords" not in models
    assert "keyword baseline is skipped" in caplog.text


def test_tfidf_beats_majority_on_real_text(small_splits):
    models = baselines.fit_baselines(small_splits["train"], baselines.BaselinesConfig(), seed=0)
    tables = baselines.predict_baselines(models, small_splits["test"], latency_rows=5, seed=0)
    accuracy = {name: (table["prediction"] == table[S.LABEL]).mean() for name, table in tables.items()}
    assert accuracy["tfidf"] > 0.8
    assert accuracy["tfidf"] > accuracy["majority"]


def test_prediction_tables_time_the_same_rows(small_splits):
    models = baselines.fit_baselines(small_splits["train"], baselines.BaselinesConfig(), seed=0)
    tables = baselines.predict_baselines(models, small_splits["test"], latency_rows=7, seed=3)
    timed = [set(table.index[table["latency_ms"].notna()]) for table in tables.values()]
    assert len(timed[0]) == 7
    assert all(rows == timed[0] for rows in timed)


def test_tfidf_config_rejects_reversed_ngram_range():
    with pytest.raises(ValueError, match="min_n <= max_n"):
        baselines.TfidfConfig(ngram_range=(2, 1))


def test_main_writes_readable_prediction_tables(small_splits, tmp_path: Path):
    from stages.core.io import write_table

    write_table(small_splits["train"], tmp_path / "train.parquet")
    write_table(small_splits["test"], tmp_path / "test.parquet")
    params = {
        "seed": 1,
        "baselines": {"keyword_rules": {"change_pin": ["pin"]}},
        "evaluate": {"latency_rows": 3},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path / "predictions"
    baselines.main(
        [
            "--params", str(tmp_path / "params.yaml"),
            "--train", str(tmp_path / "train.parquet"),
            "--test", str(tmp_path / "test.parquet"),
            "--out-dir", str(out),
            "--metrics", str(tmp_path / "metrics.json"),
        ]
    )  # fmt: skip
    names = sorted(path.stem for path in out.glob("*.parquet"))
    assert names == ["keywords", "majority", "tfidf"]
    table = read_table(out / "tfidf.parquet")
    assert list(table.columns) == [S.ROW_ID, S.LABEL, "prediction", "latency_ms"]
    assert table[S.ROW_ID].tolist() == small_splits["test"][S.ROW_ID].tolist()


def test_unlabelled_rows_are_rejected(small_splits, tmp_path: Path):
    from stages.core.errors import InputDataError
    from stages.core.io import write_table

    broken = small_splits["train"].copy()
    broken.loc[3, S.LABEL] = pd.NA
    write_table(broken, tmp_path / "train.parquet")
    with pytest.raises(InputDataError, match=r"row 4, field `label`"):
        baselines.load_labelled(str(tmp_path / "train.parquet"), "train")
