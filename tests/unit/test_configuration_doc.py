"""docs/configuration.md documents every setting (so the two cannot drift apart)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from stream.config.settings import Settings

DOC = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()


def _names(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out += _names(annotation, f"{prefix}{name}.")
        else:
            out.append(prefix + name)
    return out


def test_every_setting_is_documented() -> None:
    missing = [n for n in _names(Settings) if f"`{n}`" not in DOC]
    assert not missing, f"undocumented settings: {missing}"


def test_defaults_build() -> None:
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.granularities == ["minute", "hour", "day"]
    assert s.topics.dlq == "engagement.dlq"
