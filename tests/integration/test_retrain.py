"""The nightly retrain end to end on a small world: real Spark, Iceberg and OpenSearch."""

import json

import pytest

from hybridrec.batch.publish import rollback
from hybridrec.registry import run_history
from hybridrec.batch.retrain import retrain_job
from hybridrec.contract import EVALUATION_RUNS, EVENTS
from hybridrec.fallback import fallback_path
from hybridrec.features.documents import items_alias, users_alias
from hybridrec.lake import Lake
from hybridrec.pipeline import StepFailed
from hybridrec.search import SearchStore

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings(small_world):
    return small_world


@pytest.fixture(scope="module")
def first_run(settings):
    return retrain_job(settings)


def _aliases(settings):
    store = SearchStore(settings)
    names = [store.alias_name(f(s)) for s in ("place", "clip") for f in (items_alias, users_alias)]
    return {name: store.alias_targets(name) for name in names}


def test_publish_points_every_alias_at_the_runs_indices(settings, first_run):
    version = first_run["run"].run_id.lower()
    assert all(targets == [f"{alias}--{version}"] for alias, targets in _aliases(settings).items())
    store = SearchStore(settings)
    factors = first_run["results"]["clip"].als.factors  # chosen on the data by the run's model selection
    hits = store.knn(store.alias_name(items_alias("clip")), "cf_vector", [1.0] * factors, k=5)
    assert len(hits) == 5 and all(h.source["run_id"] == first_run["run"].run_id for h in hits)
    assert json.loads(fallback_path(settings).read_text())["run_id"] == first_run["run"].run_id


def test_run_is_registered_with_inputs_metrics_and_evaluation(settings, first_run):
    lake = Lake(settings)
    latest = run_history(lake).iloc[0]
    assert latest["run_id"] == first_run["run"].run_id and latest["status"] == "succeeded"
    assert "raw.events" in json.loads(latest["input_snapshots"])
    evaluation = lake.scan(EVALUATION_RUNS).to_pandas()
    models = set(evaluation[evaluation["run_id"] == first_run["run"].run_id]["model"])
    assert {"ranker", "als", "graph", "covisit", "popularity"} <= models
    assert (first_run["run_dir"] / "evaluation.png").stat().st_size > 10_000
    assert (first_run["run_dir"] / "ranker-clip.txt").exists()


def test_the_run_chose_its_cf_parameters_on_its_own_data_and_recorded_the_trials(settings, first_run):
    files = json.loads(run_history(Lake(settings)).iloc[0]["model_files"])
    chosen = json.loads(open(files["selection"]).read())
    for surface in ("place", "clip"):
        families, served = chosen[surface]["families"], chosen[surface]["sources"]
        assert set(families) == {"als", "bspm", "chebycf"} and chosen[surface]["best"] in families
        assert all(1 <= len(f["trials"]) <= settings.retrain.selection.trials for f in families.values())
        assert set(served) | set(chosen[surface]["dropped"]) == {"als", "graph"}
        result = first_run["results"][surface]  # what was published: the refit of the winners, with their parameters
        for source, model in (("als", result.als), ("graph", result.graph)):
            assert (model is None) == (source not in served)
            if model is not None:
                winner = families[served[source]]
                assert winner["supported"] and model.params().items() >= winner["params"].items()
        ranker = chosen[surface]["ranker"]
        assert 1 <= len(ranker["trials"]) <= settings.retrain.selection.ranker_trials
        assert ranker["params"]["n_estimators"] == result.ranker.validation()[1]


def test_the_published_run_is_refit_on_the_label_window(settings, first_run):
    """The label window chose and scored the ranker; what is published also knows its events: a click
    of those days is in the user's published seen set (it was not in the matrix the ranker learned from)."""
    split, matrix = first_run["split"], first_run["interactions"]
    events = Lake(settings).scan(EVENTS, columns=("user_id", "item_id", "surface", "event_type", "ts")).to_pandas()
    clicks = events[(events["ts"] >= split.label_start) & (events["event_type"] == "click")
                    & (events["surface"] == "clip")][["user_id", "item_id"]]
    new = clicks.merge(matrix[["user_id", "item_id"]], how="left", indicator=True)
    user_id, item_id = new[new["_merge"] == "left_only"].iloc[0][["user_id", "item_id"]]
    store = SearchStore(settings)
    doc = store.get_many(store.alias_name(users_alias("clip")), [user_id])[user_id]
    assert item_id in doc["seen"] and first_run["refit_interaction_rows"] > first_run["interaction_rows"]


def test_failed_run_never_swaps_and_a_good_run_can_be_rolled_back(settings, first_run):
    before = _aliases(settings)
    with pytest.raises(StepFailed, match="publish"):
        retrain_job(settings, fail_at="publish")
    assert _aliases(settings) == before
    assert run_history(Lake(settings)).iloc[0]["status"] == "failed"

    second = retrain_job(settings)
    warm = json.loads((first_run["run_dir"] / "selection.json").read_text())  # the second night starts from these
    tried_first = json.loads((second["run_dir"] / "selection.json").read_text())
    assert all(tried_first[s]["families"]["als"]["trials"][0]["params"] == warm[s]["families"]["als"]["params"]
               for s in ("place", "clip"))
    assert all(tried_first[s]["ranker"]["trials"][0]["params"].items() <= warm[s]["ranker"]["params"].items()
               for s in ("place", "clip"))
    assert _aliases(settings) != before
    assert all(t[0].endswith(second["run"].run_id.lower()) for t in _aliases(settings).values())
    rollback(settings)
    assert _aliases(settings) == before
