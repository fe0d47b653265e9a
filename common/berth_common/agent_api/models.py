"""The agent's HTTP API as models: every request body and every answer, one class each.

The agent's routes are declared with these (so its /openapi.json describes them), and
AgentClient parses each answer into them; nothing else spells a key of the wire. The
JSON field names stay what they have always been, camelCase ones included: a field whose
key differs from its attribute has an alias, and answers are written by alias.

Some fields have defaults only so that older or simulated agents (bench/simagent.py)
that leave them out still parse; the real agent always sends them.
"""

from __future__ import annotations

import enum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from berth_common.agent_api.services import RepositoryAddress, RepositoryServices

MIGRATION_ID = r"^[a-z0-9][a-z0-9-]{0,62}$"
TRANSFER_ID = r"^[a-z0-9][a-z0-9-]{0,80}$"
# The longest grace period a placement may ask for: the application is down meanwhile,
# and the freeze call that waits for it must end well within its 900 s.
MAX_STOP_GRACE = 300


class Aliased(BaseModel):
    """A model with camelCase keys on the wire and snake_case attributes in Python."""

    model_config = ConfigDict(populate_by_name=True)


def wire(model: BaseModel) -> dict[str, object]:
    """The model as the agent writes it (aliases for keys), ready for json.dumps."""
    return model.model_dump(mode="json", by_alias=True)


# --- errors ------------------------------------------------------------------------------
class Problem(BaseModel):
    """Every refusal's body, whatever its HTTP status."""

    code: str = Field(examples=["NotFound"])
    message: str


# --- the host ----------------------------------------------------------------------------
class Datastore(Aliased):
    size_bytes: int = Field(alias="sizeBytes")
    free_bytes: int = Field(alias="freeBytes")


class Health(BaseModel):
    """GET /healthz."""

    status: str
    machine: str
    version: str
    datastore: Datastore


# --- repositories --------------------------------------------------------------------------
class RepositoryRecord(BaseModel):
    """What the datastore records of a repository (images/GUID.json)."""

    guid: str
    name: str
    size_bytes: int
    created_at: str
    encrypted: bool = False
    moved_to: str | None = None  # set on the source after a migration: this copy is stale


class PublishedPort(BaseModel):
    """A container's port published on the host: what a client outside reaches."""

    container: int
    protocol: str
    host: int


class ContainerStatus(Aliased):
    name: str
    id: str
    image: str | None
    state: str  # docker's: running, exited, created, ...
    checkpoint: bool  # labelled to be checkpointed on a move (else restarted)
    started_at: str | None = Field(alias="startedAt")
    ports: list[PublishedPort] = Field(default_factory=list)  # while running
    # The repository's own address, held by this container (runtime/address.py): its
    # ports answer there, at the container's port numbers, on whichever machine it runs.
    address: str | None = None


class DockerStatus(BaseModel):
    """The repository's own dockerd."""

    running: bool
    pid: int | None
    socket: str
    error: str | None = None  # set when it runs and did not answer


class RepositoryStatus(RepositoryRecord):
    """GET /v1/repositories/{ref}, and each entry of GET /v1/repositories."""

    model_config = ConfigDict(populate_by_name=True)

    image_bytes: int = Field(alias="sizeBytes")  # the image file's size
    allocated_bytes: int = Field(alias="allocatedBytes")  # what it takes on the datastore
    mounted: bool
    mount_path: str | None = Field(alias="mountPath")
    docker: DockerStatus
    containers: list[ContainerStatus]
    frozen_by: str | None = Field(alias="frozenBy")  # the migration that froze it
    quiesced: bool  # its filesystem is frozen (fsfreeze)


class Heartbeat(BaseModel):
    """GET /v1/heartbeat: what the operator's heartbeat reads, in one answer. The agent
    sends an ETag; asked with that ETag in If-None-Match, it answers 304 without a body
    while nothing changed."""

    health: Health
    repositories: list[RepositoryStatus]


class MemoryMode(enum.StrEnum):
    FREEZE = "freeze"  # every page is dumped and sent while the application is frozen
    POSTCOPY = "postcopy"  # only the process state inside the freeze; pages follow
    AUTO = "auto"  # post-copy for a container holding more than AUTO_POSTCOPY_BYTES


class CreateRequest(BaseModel):
    name: str
    size: str = Field(examples=["2G"])
    guid: str | None = None
    template: str | None = Field(None, examples=["pulse"])
    services: RepositoryServices | None = None
    address: RepositoryAddress | None = Field(
        None, description="the repository's own address, given to its (only, or named) service"
    )
    key: str | None = Field(None, description="base64 LUKS key; never stored or logged")


class UpRequest(BaseModel):
    key: str | None = Field(None, description="base64 LUKS key for encrypted repositories")
    wait_answer: float | None = Field(
        None, gt=0, le=600, description="also wait until the services' TCP ports answer"
    )
    force: bool = Field(False, description="start a copy marked stale by a migration")


class DownRequest(BaseModel):
    moved_to: str | None = Field(None, description="mark this copy stale: it moved there")


class FreezeRequest(BaseModel):
    migration_id: str = Field(pattern=MIGRATION_ID)
    checkpoint: bool = Field(True, description="False: stop every container (cold)")
    memory: MemoryMode = Field(
        MemoryMode.FREEZE, description="when checkpointed containers' memory moves"
    )
    page_server_address: str | None = Field(
        None,
        pattern=r"^[0-9.]+$|^[0-9a-fA-F:]+$",
        description="this host's IP address as the target reaches it (post-copy)",
    )
    stop_grace: int | None = Field(
        None,
        ge=0,
        le=MAX_STOP_GRACE,
        description="seconds a stopped container gets between its stop signal and SIGKILL "
        "(default: its own stop timeout, else docker's 10 s)",
    )


class ResumeRequest(BaseModel):
    migration_id: str = Field(pattern=MIGRATION_ID)


class Durations(BaseModel):
    """What up, down and resume answer: seconds per step, by step."""

    durations: dict[str, float]


class Revival(BaseModel):
    """The last thaw of a repository's freeze, on the agents' own clocks (Unix seconds):
    when its source began to stop it (the freeze record travels with the image) and when
    every TCP port of its services first answered after the thaw. The application's
    downtime is the difference, whatever happened to the operator meanwhile; the two
    instants come from two hosts' clocks, kept in step by NTP."""

    migration_id: str
    frozen_at: float | None = None
    answered_at: float | None = None


class UpAnswer(Durations):
    """What up answers: its steps, and the repository's last revival (None: it was never
    frozen by a migration)."""

    revival: Revival | None = None


class PageServer(BaseModel):
    """Where a frozen container's pages are served from."""

    address: str
    port: int


class FreezeRecord(BaseModel):
    """What a freeze did (POST .../freeze answers it; the repository keeps it in
    .berth/checkpoint.json until the thaw)."""

    migration_id: str
    checkpoint: str
    checkpointed: list[str] = Field(default_factory=list)  # restore from the checkpoint
    stopped: list[str] = Field(default_factory=list)  # start fresh
    # Of the stopped: those still running when their grace period ended (SIGKILLed).
    killed: list[str] = Field(default_factory=list)
    durations: dict[str, float] = Field(default_factory=dict)
    complete: bool = True  # False: a container failed to freeze; only resume is left
    # Checkpointed containers whose memory pages stayed at the source, and where from.
    postcopy: dict[str, PageServer] = Field(default_factory=dict)
    # Wall clock (Unix seconds) when the containers began to stop: the downtime begins.
    frozen_at: float | None = None


class PostCopyProgress(enum.StrEnum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class PostCopyStatus(BaseModel):
    """One container's post-copy, as one end sees it."""

    container: str
    progress: PostCopyProgress
    seconds: float | None = None  # from its start until it ended
    error: str | None = None
    # The fetch's bytes received so far (TCP, TLS included): its progress, which a link
    # cut off silently stops (the fetch itself would wait for TCP to give up).
    bytes_received: int | None = None
    # Once the fetch has ended: the pages it placed, and how many of them a process
    # faulted on before the background transfer had brought them (it waited for those).
    pages: int | None = None
    faulted_pages: int | None = None


class PostCopyReport(BaseModel):
    """GET .../postcopy/{migration_id}: each container's post-copy on this host."""

    containers: list[PostCopyStatus]


class LogLines(BaseModel):
    lines: list[str]  # each prefixed by Docker's RFC 3339 timestamp


# --- transfers: the receiving agent's side --------------------------------------------------
class BeginRequest(BaseModel):
    transfer_id: str
    token: str
    record: RepositoryRecord
    offer_base_root: str | None = None


class TransferState(BaseModel):
    """A transfer as its receiver holds it (begin, status and each data upload answer it)."""

    transfer_id: str
    record: RepositoryRecord
    mode: str  # full | delta
    base_root: str | None
    source: str | None = None  # the sending machine, from the token
    next_block: int = 0
    received_bytes: int = 0
    full_reason: str | None = None  # set when the datastore filled up (data freed)


class CommitRequest(BaseModel):
    token: str
    root: str


class CommitResult(BaseModel):
    root: str
    mode: str
    commit_seconds: float


class Aborted(BaseModel):
    aborted: str  # the transfer id


# --- transfers: asking the sending agent to push --------------------------------------------
class PushRequest(BaseModel):
    target: str = Field(description="the receiving agent's endpoint, https://HOST:PORT")
    token: str
    transfer_id: str = Field(pattern=TRANSFER_ID)
    compress: bool = False
    bandwidth: float | None = Field(None, gt=0, description="bytes per second")
    faults: dict[str, int] = Field(
        default_factory=dict, description="test only; refused unless enabled"
    )


class PushProgress(BaseModel):
    """One line of a push's NDJSON stream while it sends."""

    event: Literal["progress"] = "progress"
    transfer_id: str = ""
    mode: str = "planning"  # then full | delta
    bytes_total: int = 0
    bytes_done: int = 0  # planned block bytes processed
    bytes_sent: int = 0  # payload bytes handed to the wire (made ahead), all attempts
    elapsed: float = 0.0
    rate: float = 0.0  # bytes sent per second
    attempts: int = 0


class PushResult(BaseModel):
    """The last line of a push that succeeded."""

    event: Literal["result"] = "result"
    summary: str
    transfer_id: str
    mode: str  # full | delta
    image_size: int
    bytes_planned: int
    bytes_sent: int
    base_id: str | None
    root: str
    attempts: int
    durations: dict[str, float]


class PushFailed(BaseModel):
    """The last line of a push that failed after its stream began: a refusal, as the
    status and body of a refused request would have told it."""

    event: Literal["error"] = "error"
    status: int = 500
    code: str = "Error"
    message: str = ""


PushEvent = Annotated[PushProgress | PushResult | PushFailed, Field(discriminator="event")]


# --- sessions: a person's logs and exec on one repository (berth_common.sessions) --------
# Their routes answer only a session certificate granting that verb on that repository
# on this machine; any other caller gets 403 with a Problem saying why.
SESSION_LOG_TAIL_MAX = 10000
ExecStream = Literal["stdout", "stderr"]


class ExecRequest(BaseModel):
    """POST /v1/sessions/{repository}/exec: a docker command, run on the agent's host
    against the repository's own dockerd. Non-interactive: no standard input, no TTY."""

    argv: list[str] = Field(min_length=1, max_length=1024, examples=[["docker", "ps", "--all"]])


class ExecOutput(BaseModel):
    """One line of exec's NDJSON answer: what the command wrote, as it came (UTF-8,
    undecodable bytes replaced)."""

    stream: ExecStream
    data: str


class ExecExit(BaseModel):
    """The last line of exec's NDJSON answer: the command's exit code (128 + N when
    signal N killed it)."""

    exit: int
    message: str | None = None  # why the agent ended it (its time limit), when it did


ExecFrame = ExecOutput | ExecExit
