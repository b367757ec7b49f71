import json

import pytest

from hybridrec.batch.gowalla import SPLITS, load_gowalla, read_split
from hybridrec.lake import Lake
from hybridrec.runinfo import new_run


def _write(dir_, train, test):
    (dir_ / "train.txt").write_text(train)
    (dir_ / "test.txt").write_text(test)


def test_loader_keeps_the_published_split(tmp_path, tmp_lake_settings):
    _write(tmp_path, "0 1 2 3\n1 2\n2\n", "0 4\n1 3 5\n")
    lake = Lake(tmp_lake_settings)
    counts = load_gowalla(lake, tmp_path, new_run(tmp_lake_settings, "test"))
    assert counts == {"gowalla.events_train": 4, "gowalla.events_test": 3}
    test_rows = lake.scan(SPLITS["test"]).to_pylist()
    assert {(r["user_id"], r["item_id"]) for r in test_rows} == {
        ("gowalla:u0", "gowalla:p4"), ("gowalla:u1", "gowalla:p3"), ("gowalla:u1", "gowalla:p5")}
    assert {r["event_type"] for r in test_rows} == {"visit"} and {r["surface"] for r in test_rows} == {"place"}
    load_gowalla(lake, tmp_path, new_run(tmp_lake_settings, "test"))
    assert lake.count(SPLITS["train"]) == 4


def test_malformed_line_names_file_and_line(tmp_path):
    (tmp_path / "train.txt").write_text("0 1 2\n1 x\n")
    with pytest.raises(ValueError, match=r"train.txt:2"):
        list(read_split(tmp_path / "train.txt"))


def test_missing_split_file_is_explained(tmp_path, tmp_lake_settings):
    with pytest.raises(FileNotFoundError, match="PROVENANCE"):
        load_gowalla(Lake(tmp_lake_settings), tmp_path, new_run(tmp_lake_settings, "test"))


def test_the_benchmark_report_carries_measured_provenance(tmp_path):
    from hybridrec.bench.gowalla import run_gowalla_benchmark

    train = "".join(f"{u} {' '.join(str((u + k) % 40) for k in range(6))}\n" for u in range(40))
    test = "".join(f"{u} {(u + 7) % 40}\n" for u in range(40))
    _write(tmp_path, train, test)
    report = run_gowalla_benchmark(tmp_path, ["als"], params={"als": {"factors": 4, "iterations": 2}},
                                   output=tmp_path / "out.json")
    assert report["machine"] != "2 cores, 24 GiB, CPU only" and "cores" in report["machine"]
    assert {"git_commit", "load_average_start", "load_average_end"} <= set(report["provenance"])
    assert (tmp_path / "out.json").exists() and 0 <= report["recall@20"] <= 1
    als = report["models"]["als"]
    assert als["params"]["factors"] == 4 and report["best_model_chosen_on"] == "validation"
    for split in ("validation", "test"):
        assert {"recall@20", "ndcg@20", "train_s", "eval_s", "peak_rss_mb"} <= set(als[split])
    assert report["recall@20"] == als["test"]["recall@20"]
    assert {"ChebyCF", "BSPM-EM", "LightGCN"} <= set(report["published"])


def test_keep_others_re_measures_one_family_and_keeps_the_rest(tmp_path):
    from hybridrec.bench.gowalla import run_gowalla_benchmark

    train = "".join(f"{u} {' '.join(str((u + k) % 40) for k in range(6))}\n" for u in range(40))
    test = "".join(f"{u} {(u + 7) % 40}\n" for u in range(40))
    _write(tmp_path, train, test)
    out = tmp_path / "out.json"
    tiny = {"als": {"factors": 4, "iterations": 2}, "gfcf": {"ideal_rank": 4}}
    run_gowalla_benchmark(tmp_path, ["als"], params=tiny, output=out)
    first_als = json.loads(out.read_text())["models"]["als"]
    report = run_gowalla_benchmark(tmp_path, ["gfcf"], params=tiny, output=out, keep_others=True)
    assert set(report["models"]) == {"als", "gfcf"} and report["models"]["als"] == first_als
    assert "git_commit" in report["models"]["gfcf"]["run"]
    report = run_gowalla_benchmark(tmp_path, ["gfcf"], params=tiny, output=out)
    assert set(report["models"]) == {"gfcf"}


def test_sweep_figures_equal_the_models_own_evaluation(tmp_path):
    """The sweep's shortcut (shared Chebyshev terms, sparse ideal projection) must score a setting
    exactly as fitting that ChebyCF and evaluating it would, on the same validation users."""
    from hybridrec.bench.gowalla_sweep import sweep
    from hybridrec.config import load_settings
    from hybridrec.models.collaborative import ChebyCFModel
    from hybridrec.models.evaluation import holdout_split, recall_ndcg_at_k

    rows = [f"{u} {' '.join(str((u % 5) * 8 + (u + k) % 8) for k in range(6))} {(u * 7) % 40}\n"
            for u in range(60)]
    _write(tmp_path, "".join(rows), "".join(f"{u} {(u + 3) % 40}\n" for u in range(60)))
    results = sweep(tmp_path, orders=[2, 4], flatness=[1.0, 2.0], ideal_ranks=[3, 6],
                    ideal_weights=[0.0, 0.3], degree_powers=[0.0, 0.4], users=0, seed=0,
                    batch_size=16)
    assert len(results) == 32
    row = next(r for r in results if (r["order"], r["flatness"], r["ideal_rank"], r["ideal_weight"],
                                      r["degree_power"]) == (4, 2.0, 3, 0.3, 0.4))
    from hybridrec.bench.gowalla import load_gowalla as load_split
    cfg = load_settings().gowalla
    fit, valid = holdout_split(load_split(tmp_path)[0], cfg.validation_share, cfg.validation_seed)
    model = ChebyCFModel(order=4, flatness=2.0, ideal_rank=3, ideal_weight=0.3,
                         degree_power=0.4).fit(fit)
    direct = recall_ndcg_at_k(model, fit, valid, k=cfg.k, show_progress=False)
    assert abs(row["recall@20"] - direct["recall@20"]) < 1e-4
    assert abs(row["ndcg@20"] - direct["ndcg@20"]) < 1e-4
