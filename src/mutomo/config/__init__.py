"""The configuration file: its schema and validation (:mod:`~mutomo.config.schema`), the
configurations the package ships (``builtin/``), and the one place a configuration becomes built
objects (:mod:`~mutomo.config.build`). Nothing below this package knows the file format."""

from mutomo.config.build import (
    build_design,
    build_problem,
    comparison_designs,
    evaluation_settings,
    load_benchmark,
    settings_from,
)
from mutomo.config.schema import RunConfig, builtin_configs, load_config, parse_config

__all__ = [
    "RunConfig",
    "build_design",
    "build_problem",
    "builtin_configs",
    "comparison_designs",
    "evaluation_settings",
    "load_benchmark",
    "load_config",
    "parse_config",
    "settings_from",
]
