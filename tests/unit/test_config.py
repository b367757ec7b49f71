import pytest
import yaml
from pydantic import BaseModel, ValidationError

from hybridrec.config import DEFAULT_CONFIG_FILE, OPERATIONAL_KEYS, Settings, SignalSettings, load_settings


def test_default_file_loads_and_validates():
    settings = load_settings(environ={})
    assert settings.kafka.port == 9092
    assert settings.opensearch.knn_plugin_version.startswith(settings.opensearch.version)
    assert settings.catalog_uri.startswith("sqlite:///") and settings.warehouse_uri.startswith("file:///")


def test_environment_overrides_nested_keys_with_typed_values():
    settings = load_settings(environ={"HYBRIDREC__KAFKA__PORT": "19092", "HYBRIDREC__SYNTHETIC__COLD_USER_SHARE": "0.1"})
    assert settings.kafka.port == 19092
    assert settings.synthetic.cold_user_share == pytest.approx(0.1)


def test_serving_workers_default_to_one_per_core_plus_one(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert load_settings(environ={}).serving.processes == 9
    assert load_settings(environ={"HYBRIDREC__SERVING__WORKERS": "2"}).serving.processes == 2


def test_config_hash_is_the_declared_settings_not_the_machine(monkeypatch):
    """``serving.workers: 0`` means "per core": resolved where used, so two machines hash one config alike."""
    seen = {}
    for cores in (2, 64):
        monkeypatch.setattr("os.cpu_count", lambda: cores)
        settings = load_settings(environ={})
        seen[cores] = (settings.serving.processes, settings.config_hash(), settings.model_config_hash())
    assert seen[2][0] == 3 and seen[64][0] == 65
    assert seen[2][1:] == seen[64][1:]


def test_default_file_declares_every_setting():
    """One config object: every key of the settings is in configs/default.yaml (where its comment is)."""
    declared = yaml.safe_load(DEFAULT_CONFIG_FILE.read_text())

    def missing(model: BaseModel, node: dict, prefix: str) -> list[str]:
        out = []
        for name in type(model).model_fields:
            if name not in node:
                out.append(prefix + name)
            elif isinstance(value := getattr(model, name), BaseModel):
                out += missing(value, node[name], f"{prefix}{name}.")
        return out

    assert missing(Settings(), declared, "") == []
    assert load_settings(environ={}) == Settings()  # and the file's values are the code's defaults


def test_model_config_hash_follows_what_shapes_a_model_only():
    base = load_settings(environ={}).model_config_hash()
    for changed in ({"HYBRIDREC__RETRAIN__RANKER__NUM_LEAVES": "15"}, {"HYBRIDREC__SIGNALS__DWELL_FULL_MS": "1000"},
                    {"HYBRIDREC__EXTRACTION__EMBEDDER": "use-m3-pieces"}, {"HYBRIDREC__DISTILL__MAX_TAGS": "2"}):
        assert load_settings(environ=changed).model_config_hash() != base, changed
    for same in ({"HYBRIDREC__SERVING__MMR_LAMBDA": "0.5"}, {"HYBRIDREC__RETRAIN__MODELS_DIR": "elsewhere"},
                 {"HYBRIDREC__EXTRACTION__CHUNK_DOCS": "10"}, {"HYBRIDREC__OPENSEARCH__PORT": "19200"}):
        assert load_settings(environ=same).model_config_hash() == base, same


def test_operational_keys_name_real_settings():
    settings = Settings()
    for key in OPERATIONAL_KEYS:
        node = settings
        for part in key.split("."):
            assert part in type(node).model_fields, key
            node = getattr(node, part)


def test_event_weights_of_unknown_event_types_are_a_config_error():
    with pytest.raises(ValidationError, match="purchase"):
        SignalSettings(event_weights={"purchase": 5.0})


def test_label_gains_of_unknown_event_types_are_a_config_error():
    with pytest.raises(ValidationError, match="purchase"):
        load_settings(environ={"HYBRIDREC__RETRAIN__LABEL_GAINS": "{click: 1, purchase: 3}"})


def test_unknown_key_is_rejected_not_ignored():
    with pytest.raises(ValidationError, match="extra"):
        load_settings(environ={"HYBRIDREC__KAFKA__PROT": "1"})


def test_clashing_ports_are_rejected():
    with pytest.raises(ValidationError, match="distinct"):
        load_settings(environ={"HYBRIDREC__OPENSEARCH__PORT": "9092"})


def test_config_hash_tracks_effective_settings():
    base = load_settings(environ={})
    assert base.config_hash() == load_settings(environ={}).config_hash()
    assert base.config_hash() != load_settings(environ={"HYBRIDREC__SYNTHETIC__SEED": "8"}).config_hash()


def test_missing_config_file_says_which(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_settings(tmp_path / "nope.yaml", environ={})


def test_config_file_from_environment(tmp_path):
    custom = tmp_path / "custom.yaml"
    custom.write_text(DEFAULT_CONFIG_FILE.read_text().replace("seed: 7", "seed: 99"))
    assert load_settings(environ={"HYBRIDREC_CONFIG": str(custom)}).synthetic.seed == 99


def test_cluster_topology_lays_its_settings_over_the_sections():
    single = load_settings(environ={})
    assert single.infra.topology == "single" and single.kafka.bootstrap == "127.0.0.1:9092"
    cluster = load_settings(environ={"HYBRIDREC__INFRA__TOPOLOGY": "cluster", "HYBRIDREC__KAFKA__HEAP_MB": "300"})
    k, o = cluster.kafka, cluster.opensearch
    assert k.bootstrap == "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094"
    assert (k.replication_factor, k.min_insync_replicas, k.heap_mb) == (3, 2, 300)  # the environment still wins
    assert o.urls == ["http://127.0.0.1:19200", "http://127.0.0.1:19201", "http://127.0.0.1:19202"] and o.replicas == 1
    assert cluster.spark.master.startswith("spark://") and cluster.catalog_uri.startswith("postgresql")
    single_ports = {p for pair in (*single.kafka.node_ports, *single.opensearch.node_ports) for p in pair}
    assert not single_ports & {p for pair in (*k.node_ports, *o.node_ports) for p in pair}


def test_replication_beyond_the_nodes_is_refused():
    with pytest.raises(ValueError, match="replication_factor"):
        load_settings(environ={"HYBRIDREC__KAFKA__REPLICATION_FACTOR": "3"})
    with pytest.raises(ValueError, match="replicas"):
        load_settings(environ={"HYBRIDREC__OPENSEARCH__REPLICAS": "1"})
