"""The app for ``uvicorn hybridrec.serving.asgi:app`` (multi-worker serving): settings from the environment."""

from hybridrec.config import load_settings
from hybridrec.logs import configure_logging
from hybridrec.serving.app import create_app
from hybridrec.serving.ratelimit import table_from_environment

_settings = load_settings()
configure_logging(_settings.log_level)
app = create_app(_settings, rate_limit_table=table_from_environment())
