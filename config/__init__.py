"""Configuration: the HJSON loader/validator and its schema (``env_schema.hjson``)."""

from courseinv.config.loader import Config, ConfigError, default_config_path, load_config

__all__ = ["Config", "ConfigError", "default_config_path", "load_config"]
