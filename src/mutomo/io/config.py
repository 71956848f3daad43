"""The run configuration: a TOML or YAML file validated by a pydantic schema.

Every table refuses unknown keys; every number has its allowed range. :func:`load_config`
raises :class:`ConfigError` listing each bad field by its dotted path (``training.epochs``),
what was given and what is allowed, before anything is simulated. See ``configs/`` for examples
and README.md for the reference.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

Positive = Annotated[float, Field(gt=0)]
Group = Literal["xy", "z", "size", "resolution", "efficiency"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaskConfig(Strict):
    name: Literal["ladle_furnace"] = "ladle_furnace"
    theta_max_deg: float = Field(40.0, gt=0, le=85, description="largest zenith angle of the muons (deg)")


class PanelConfig(Strict):
    side: Literal["above", "below"]
    x: float
    y: float
    z: float
    span: Positive = Field(description="square panel width (m)")
    resolution: float = Field(1e-4, gt=0, le=0.01)
    efficiency: float = Field(0.9, gt=0, lt=1)


class DesignConfig(Strict):
    start: str = Field("poor", description="a built-in design of the task, or a design JSON file")
    panels: list[PanelConfig] | None = Field(None, description="explicit panels instead of `start`")
    trainable: list[Group] = ["xy", "z", "size"]
    fixed_budget: bool = True

    @model_validator(mode="after")
    def _sides(self) -> DesignConfig:
        if self.panels is not None:
            n_above = sum(p.side == "above" for p in self.panels)
            if n_above < 2 or len(self.panels) - n_above < 2:
                raise ValueError("design.panels needs at least 2 panels above and 2 below")
        return self


class TrainingConfig(Strict):
    epochs: int = Field(200, ge=1, le=100_000)
    volumes_per_epoch: int = Field(8, ge=4, le=1024)
    muons_per_volume: int = Field(1000, ge=10, le=10_000_000)
    validation_volumes: int = Field(16, ge=0, le=10_000)
    validate_every: int = Field(20, ge=1)
    seed: int = Field(0, ge=0)
    warmup_epochs: int = Field(5, ge=0)
    final_lr_fraction: float = Field(0.1, gt=0, le=1)
    smoothness: tuple[Positive, Positive] = (0.05, 0.005)
    # Groups not listed keep TrainingSettings' defaults (0.02 m for xy and z, 0.05 for the others).
    learning_rates: dict[Group, Annotated[float, Field(ge=0, le=10)]] = {}
    optimisers: dict[Group, Literal["adam", "sgd", "rmsprop"]] = {}

    @field_validator("volumes_per_epoch")
    @classmethod
    def _even(cls, v: int) -> int:
        if v % 2:
            raise ValueError("must be even (each target is drawn twice)")
        return v


class EvaluationConfig(Strict):
    n_volumes: int = Field(96, ge=2, le=100_000)
    n_muons: int = Field(1000, ge=10, le=10_000_000)
    calibration_per_target: int = Field(4, ge=1, le=1000)
    seed: int = Field(12345, ge=0)
    compare: list[str] = ["human_resolution", "human_acceptance"]


class OutputConfig(Strict):
    directory: str = "runs/run"
    x0_muons: int = Field(50_000, ge=0, le=10_000_000, description="muons for the X0 slice figure (0: none)")


class RunConfig(Strict):
    task: TaskConfig = TaskConfig()
    design: DesignConfig = DesignConfig()
    training: TrainingConfig = TrainingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    output: OutputConfig = OutputConfig()


class ConfigError(ValueError):
    """A configuration that does not validate; the message names every bad field."""


def _format(error: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for e in error.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        given = e.get("input")
        given_text = "" if isinstance(given, dict) else f" (got {given!r})"
        lines.append(f"  {where}: {e['msg']}{given_text}")
    return "\n".join(lines)


def parse_config(data: dict[str, Any], source: str = "configuration") -> RunConfig:
    """Validate a configuration given as nested dictionaries."""
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format(exc, source)) from None


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a ``.toml``, ``.yaml`` or ``.yml`` file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such configuration file")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"{path}: unknown configuration format {path.suffix!r}; use .toml, .yaml or .yml")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not valid {path.suffix[1:].upper()}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a table of sections")
    return parse_config(data, str(path))
