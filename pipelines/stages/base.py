"""The contract every row stage keeps, and the chain entry the runner schedules.

A row stage takes a pyarrow table of pipeline rows (``unieditkit.format.row_schema``) and returns a table of the
same schema; it may turn one row into several (a unit into its samples) or mark rows rejected, never drop one
(the distributor counts each unit's rows). CPU stages are ready callables that Ray Data fuses into one task per
batch; model stages are classes whose constructor loads the model (their setup), built once per Ray actor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pyarrow as pa

    from ..config import StageResources


@runtime_checkable
class RowStage(Protocol):
    """Table of rows in, table of rows out (same schema); its name and resources live on its ``Stage``."""

    def __call__(self, table: pa.Table) -> pa.Table: ...


@dataclass
class Stage:
    """One step of the chain: a ready callable (CPU stage), or a class + kwargs built once per actor."""

    name: str
    fn: Any
    kwargs: dict[str, Any] = field(default_factory=dict)
    resources: StageResources | None = None

    def instantiate(self) -> RowStage:
        return self.fn if self.resources is None else self.fn(**self.kwargs)
