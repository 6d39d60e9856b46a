"""Planning's slow part, measuring inputs that must be decoded (a clip's frame count and shots), as parallel Ray
tasks whose answers are kept in the output folder, so a resumed or repeated build does not decode them again.

Why: counting a clip's frames may decode all of it (a truncated file's header lies) and shot detection always
does. One clip after another on the driver, that delays the first shard by hours for a large video folder, and
every resume paid it again. An answer is a function of the file and the settings alone, so measuring anywhere,
in any order, or reading it back from an earlier run gives the same plan: the same units and byte-identical
shards as a source that measures on the spot (``ProbeRequest``, ``pipelines/sources/video.py``).

The cache is ``PROBES_FILE`` in the output folder, read and written through ``Folder`` (so it lives next to the
shards on object storage too): ``{"version": 1, "entries": {key: {"size", "mtime_ns", "answer"}}}``. The key
names the input and the settings; its size and modification time must match as well, so a clip edited or
replaced in place is probed again and its entry replaced. The file is written once per build, after planning
succeeded and under the build lock (a build with bad input creates nothing), merged into what is there (builds
of other domains share the folder). A build killed while probing therefore probes again; one killed later does
not. An unreadable cache is announced in the summary and rebuilt.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from unieditkit.format import PROBES_FILE
from unieditkit.storage import Folder

from .config import TASK_RETRIES, BuildConfig
from .cluster import start_ray
from .sources import Source
from .sources.base import ProbedSource, ProbeRequest

log = logging.getLogger(__name__)

PROBES_VERSION = 1


@dataclass
class Probes:
    """The answers of one build's probing: how many were measured, how many came from the cache, what to keep."""

    out: Folder
    probed: int = 0
    cached: int = 0
    #: entries to merge into the cache: answers measured now (never an error, see ``ProbeRequest``)
    fresh: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        return f"probed inputs (frame counts, shots): {self.probed} measured in Ray tasks, {self.cached} taken from {PROBES_FILE}"

    def save(self) -> None:
        """Merge the fresh answers into the cache; call under the build lock (another domain may have saved since)."""
        if not self.fresh:
            return
        entries = _read(self.out)[0]
        entries.update(self.fresh)
        self.out.write_bytes(PROBES_FILE, (json.dumps({"version": PROBES_VERSION, "entries": entries}, sort_keys=True) + "\n").encode())
        self.fresh = {}


def probe_sources(sources: list[Source], out: Folder, config: BuildConfig) -> Probes:
    """Answer every source's probe requests (kept answers first, the rest as Ray tasks) and hand them over."""
    probed = [s for s in sources if isinstance(s, ProbedSource)]
    requests = {r.key: r for s in probed for r in s.probe_requests()}
    probes = Probes(out)
    if not requests:
        return probes
    kept, problem = _read(out)
    if problem:
        probes.notes.append(f"{out}/{PROBES_FILE}: {problem}; every input was probed again and the file rewritten")
        log.warning("%s", probes.notes[-1])
    answers: dict[str, dict[str, Any]] = {}
    todo: list[tuple[ProbeRequest, os.stat_result | None]] = []
    for key, request in requests.items():
        st = os.stat(request.path) if os.path.isfile(request.path) else None
        entry = kept.get(key)
        if st is not None and isinstance(entry, dict) and (entry.get("size"), entry.get("mtime_ns")) == (st.st_size, st.st_mtime_ns):
            answers[key] = entry["answer"]
        else:
            todo.append((request, st))
    probes.cached = len(answers)
    if todo:
        import ray

        start_ray(config)
        task = ray.remote(_measure).options(max_retries=TASK_RETRIES)
        for (request, st), answer in zip(todo, ray.get([task.remote(request) for request, _ in todo])):
            answers[request.key] = answer
            if st is not None and "error" not in answer:
                probes.fresh[request.key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "answer": answer}
        probes.probed = len(todo)
    for source in probed:
        source.use_probes(answers)
    log.info("%s", probes.line())
    return probes


def _measure(request: ProbeRequest) -> dict[str, Any]:
    return request.measure()


def _read(out: Folder) -> tuple[dict[str, dict[str, Any]], str]:
    """The kept entries, and what was wrong with the file ("" when it is fine or absent)."""
    if not out.exists(PROBES_FILE):
        return {}, ""
    try:
        data = json.loads(out.read_bytes(PROBES_FILE))
        if data["version"] != PROBES_VERSION:
            return {}, f"version {data['version']!r}, this unieditkit reads {PROBES_VERSION}"
        entries = data["entries"]
        if not isinstance(entries, dict):
            raise TypeError("entries is not an object")
        return entries, ""
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return {}, f"unreadable ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"
