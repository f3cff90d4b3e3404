"""S/MIME handler (work in progress)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from gateway.unwrap import LayerKind, LayerOutcome
from gateway.unwrap.mimecut import Entity
from gateway.verdict import Scheme

if TYPE_CHECKING:
    from gateway.config import SmimeConfig


class SmimeHandler:
    scheme: Scheme = "smime"

    @classmethod
    def from_config(cls, config: SmimeConfig | None, *, config_file: str) -> SmimeHandler:
        return cls()

    def claims(self, entity: Entity) -> LayerKind | None:
        return None

    def open(self, entity: Entity, *, at: datetime) -> LayerOutcome:
        raise NotImplementedError
