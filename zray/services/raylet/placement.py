"""Where a task submitted to this raylet runs: pure decision, state in.

Bottom-up: a task runs here when this node can run it now (or soon: a
short queue) and its inputs are mostly here; otherwise it goes to a global
scheduler, which sees every node's load and where the inputs are. A node
affinity goes straight to its node. Tasks another node forwarded here stay
here: forwarding twice would only add a hop.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

# Inputs held elsewhere beyond this size make the placement worth a global look.
REMOTE_INPUT_BYTES = 1 << 20
# Queued tasks per CPU before a busy node asks for help.
QUEUE_PER_CPU = 2


class Where(enum.Enum):
    LOCAL = "local"          # queue here
    SPILL = "spill"          # ask a global scheduler
    FORWARD = "forward"      # straight to the affinity node
    UNSCHEDULABLE = "fail"   # a hard affinity to a node that cannot run it


@dataclass(frozen=True)
class Situation:
    node_id: str
    feasible_here: bool      # this node's total resources cover the request
    free_here: bool          # ... and they are available now (for the record)
    queue_len: int
    cpus: float
    remote_input_bytes: int  # inputs held on other nodes
    local_input_bytes: int
    has_peers: bool          # other live nodes exist
    has_scheduler: bool
    forwarded: bool          # another node sent it here


def decide(s: Situation, strategy: str = "DEFAULT", affinity_node: str | None = None,
           affinity_soft: bool = False, affinity_ok: bool = False) -> Where:
    """`affinity_ok`: the affinity node is alive and its resources cover the request."""
    if s.forwarded:
        return Where.LOCAL
    if affinity_node and affinity_node != s.node_id:
        if affinity_ok:
            return Where.FORWARD
        if not affinity_soft:
            return Where.UNSCHEDULABLE
    elif affinity_node == s.node_id and (s.feasible_here or not affinity_soft):
        return Where.LOCAL
    if not s.has_peers or not s.has_scheduler:
        return Where.LOCAL  # alone (or no scheduler alive): what fits runs here, the rest waits
    if not s.feasible_here:
        return Where.SPILL
    if strategy == "SPREAD":
        return Where.SPILL
    if s.remote_input_bytes > REMOTE_INPUT_BYTES and s.remote_input_bytes > s.local_input_bytes:
        return Where.SPILL
    if s.queue_len < QUEUE_PER_CPU * max(1.0, s.cpus):
        return Where.LOCAL
    return Where.SPILL
