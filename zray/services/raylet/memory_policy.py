"""Store memory decisions, pure: which objects to spill, and how to explain a
store that cannot make room. State in, decision out; no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

MiB = 1024**2


@dataclass(frozen=True)
class Candidate:
    """A sealed, unpinned object in memory that could be spilled."""

    object_id: str
    size: int
    last_used: float


def spill_batch_bytes(capacity: int) -> int:
    """Spill at least this much at once, so a run of puts does not spill per put."""
    return min(capacity // 10, 256 * MiB)


def spill_victims(candidates: Iterable[Candidate], need: int, batch: int) -> list[str]:
    """Least recently used first, until at least `need` bytes (and, if there
    are enough candidates, `batch` bytes) are covered; [] when even all
    candidates together cannot cover `need`: spilling would not help then."""
    if need <= 0:
        return []
    chosen: list[str] = []
    total = 0
    target = max(need, batch)
    for cand in sorted(candidates, key=lambda c: c.last_used):
        if total >= target:
            break
        chosen.append(cand.object_id)
        total += cand.size
    return chosen if total >= need else []


@dataclass(frozen=True)
class StoreUse:
    """Where the store's bytes are, for the full-store error."""

    capacity: int
    used: int
    pinned_by_tasks: int
    pinning_tasks: int
    held: dict[str, tuple[int, int]]  # holder -> (objects, bytes)
    nested: int
    unsealed: int
    spillable: int


def _mib(n: int) -> str:
    return f"{n / MiB:.1f} MiB"


def full_message(size: int, object_id: str, waited: float, use: StoreUse,
                 spill_problem: str | None) -> str:
    """Why `size` bytes did not fit, what holds the memory, and what to do."""
    parts = []
    if use.held:
        top = sorted(use.held.items(), key=lambda kv: -kv[1][1])[:3]
        who = ", ".join(f"{h}: {n} object{'s' if n != 1 else ''} {_mib(b)}" for h, (n, b) in top)
        more = f", and {len(use.held) - 3} more" if len(use.held) > 3 else ""
        parts.append(f"{_mib(sum(b for _, b in use.held.values()))} held by live refs "
                     f"({who}{more})")
    if use.pinned_by_tasks:
        parts.append(f"{_mib(use.pinned_by_tasks)} pinned as arguments of {use.pinning_tasks} "
                     f"running task{'s' if use.pinning_tasks != 1 else ''}")
    if use.nested:
        parts.append(f"{_mib(use.nested)} nested in other live objects")
    if use.unsealed:
        parts.append(f"{_mib(use.unsealed)} being written")
    held = "; ".join(parts) or "nothing sealed"
    text = (f"object store full: cannot fit {_mib(size)} for object {object_id[:16]} after "
            f"waiting {waited:.1f}s: {_mib(use.used)} of {_mib(use.capacity)} in use ({held})")
    if spill_problem:
        text += f"; spilling failed: {spill_problem}"
    elif use.spillable:
        text += f"; {_mib(use.spillable)} more could be spilled but not enough"
    if size > use.capacity:
        return text + (f". The object is larger than the whole store: raise "
                       f"--object-store-memory above {_mib(size)} or make the object smaller.")
    return text + (". Drop references you no longer need (del ref), wait for tasks holding "
                   "arguments to finish, raise --object-store-memory"
                   + (", or point --spill-dir at a disk with more room." if spill_problem else "."))
