"""The contract every row stage keeps, and the chain entry the runner schedules.

A row stage takes a pyarrow table of pipeline rows (``unieditkit.format.row_schema``) and returns a table of the
same schema; it may turn one row into several (a unit into its samples) or mark rows rejected, never drop one
(the distributor counts each unit's rows). CPU stages are ready callables that Ray Data fuses into one task per
batch; model stages are classes whose constructor loads the model (their setup), built once per Ray actor.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pyarrow as pa

    from .model_stages import StageResources


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
        """The callable; a model stage is built once per process and then reused. Units whose batch was lost run
        again one per Ray task (``runner.rerun_missing``) on a few worker processes: without reuse, each unit
        would load every model again."""
        if self.resources is None:
            return self.fn
        key = pickle.dumps((self.name, self.fn, self.kwargs))
        if key not in _BUILT:
            if len(_BUILT) >= _BUILT_MAX:
                _BUILT.pop(next(iter(_BUILT)))
            _BUILT[key] = self.fn(**self.kwargs)
        return _BUILT[key]


#: model stages built in this process, by stage and constructor arguments; a few builds' worth at most
_BUILT: dict[bytes, RowStage] = {}
_BUILT_MAX = 8
