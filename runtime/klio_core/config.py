"""``klio_core.config``: Klio's import path for the job config; the classes are ours."""

from klio_runtime.config import (
    ConfigError,
    JobConfig,
    KlioConfig,
    PipelineOptions,
    dump_config,
    load_config,
    parse_config,
)

# Klio's names for the two sections.
KlioJobConfig = JobConfig
KlioPipelineConfig = PipelineOptions

__all__ = [
    "ConfigError",
    "KlioConfig",
    "KlioJobConfig",
    "KlioPipelineConfig",
    "dump_config",
    "load_config",
    "parse_config",
]
