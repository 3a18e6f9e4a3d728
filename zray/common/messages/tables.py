"""Values stored in the GCS tables (as JSON)."""

from __future__ import annotations

from zray.common.messages.task import Record

NODES = "nodes"
TASKS = "tasks"
OBJECTS = "objects"
FUNCTIONS = "functions"
JOBS = "jobs"
ACTORS = "actors"
KV = "kv"
COUNTERS = "counters"
# kv keys: a global scheduler's registration, and the death mark of a node.
SCHEDULERS_PREFIX = "scheduler:"
NODE_DEAD_PREFIX = "node_dead:"
# kv key: the global scheduler that restarts the actors of a dead node.
ACTOR_FAILOVER_PREFIX = "actor_failover:"
USER_KV = "user_kv"  # zray.kv: keys are the hex of the user's key bytes
# Observability: batches of task state records per raylet (key node_id:seq),
# and each raylet's worker list (key node_id). See zray/services/raylet/task_events.py.
TASK_EVENTS = "task_events"
WORKERS = "workers"
# Per raylet (key node_id): task counts by state and its latest failures, so the
# dashboard need not read the whole task history each refresh.
TASK_SUMMARY = "task_summary"
TABLES = (NODES, TASKS, OBJECTS, FUNCTIONS, JOBS, ACTORS, KV, COUNTERS, USER_KV, TASK_EVENTS,
          WORKERS, TASK_SUMMARY)


class NodeInfo(Record):
    node_id: str
    node_name: str
    host: str
    address: str
    local_address: str
    store_dir: str
    session_dir: str
    pid: int
    alive: bool = True
    start_time: float
    heartbeat_time: float
    resources_total: dict[str, float]
    resources_available: dict[str, float]
    store_used: int = 0
    store_capacity: int = 0
    num_objects: int = 0
    spilled_bytes: int = 0
    num_spilled: int = 0
    tasks_queued: int = 0
    tasks_running: int = 0
    tasks_finished: int = 0
    tasks_failed: int = 0
    workers: int = 0
    # Tasks waiting for a placement, by resource shape ("2 x {'GPU': 1.0}").
    tasks_waiting: list[str] = []


class JobInfo(Record):
    job_id: str
    driver_pid: int
    host: str
    start_time: float
    end_time: float | None = None
    # Where the driver finds its own modules (script folder, working folder):
    # workers on its host add them to sys.path, so functions pickled by
    # reference to those modules can be loaded.
    code_paths: list[str] = []


class ObjectInfo(Record):
    object_id: str
    size: int
    locations: list[str]
    task_id: str
    is_put: bool


class ActorInfo(Record):
    """The GCS actor table's row: what `get_actor` and `zray status` read."""

    actor_id: str
    class_name: str
    job_id: str
    state: str  # PENDING, ALIVE, RESTARTING, DEAD
    name: str | None = None
    namespace: str = "default"
    detached: bool = False
    node_id: str = ""
    pid: int = 0
    restarts: int = 0
    max_restarts: int = 0
    death_cause: str = ""
    is_async: bool = False
    methods: dict[str, int] = {}
    # What another node needs to restart the actor when its node dies: the
    # constructor's task (its spec is kept in the tasks table while the actor
    # may restart), the resources it holds, and its calls' retry budget.
    creation_task_id: str = ""
    resources: dict[str, float] = {}
    max_task_retries: int = 0
