import pytest
from pydantic import ValidationError

from hybridrec.config import DEFAULT_CONFIG_FILE, SignalSettings, load_settings


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
    assert load_settings(environ={}).serving.workers == 9
    assert load_settings(environ={"HYBRIDREC__SERVING__WORKERS": "2"}).serving.workers == 2


def test_event_weights_of_unknown_event_types_are_a_config_error():
    with pytest.raises(ValidationError, match="purchase"):
        SignalSettings(event_weights={"purchase": 5.0})


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
