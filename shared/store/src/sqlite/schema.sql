-- The embedded job store's tables (schema version 2). Times are milliseconds since the epoch;
-- documents are JSON text. See `mod.rs` for how work moves through `work`.

-- Every durable work item, of every kind: `job` (a job's generation), `delivery` (a webhook
-- event) or `run` (the MLflow run of a finished job or batch: id `job-<id>` or `batch-<id>`). An item is waiting for dispatch while `pending` = 1 (in its `lane`: a batch's id for a
-- batch's job, '' otherwise), handed to the transport while `dispatched_at` is set, and running
-- while `lease_until` is set.
CREATE TABLE work (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    status TEXT NOT NULL,
    lane TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    due_at INTEGER NOT NULL,
    pending INTEGER NOT NULL DEFAULT 1,
    dispatched_at INTEGER,
    token TEXT,
    lease_until INTEGER,
    worker TEXT,
    error TEXT,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    expires_at INTEGER,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;
CREATE INDEX work_pending ON work (lane, due_at) WHERE pending = 1;
CREATE INDEX work_dispatched ON work (dispatched_at) WHERE dispatched_at IS NOT NULL;
CREATE INDEX work_leases ON work (lease_until) WHERE lease_until IS NOT NULL;
CREATE INDEX work_status ON work (kind, status, id);
CREATE INDEX work_expiry ON work (expires_at) WHERE expires_at IS NOT NULL;

-- What a job is about; its status, attempts and times are its `work` row's.
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    batch_id TEXT,
    spec TEXT NOT NULL,
    stage TEXT NOT NULL,
    result TEXT,
    event_id TEXT
);
CREATE INDEX jobs_batch ON jobs (batch_id, id) WHERE batch_id IS NOT NULL;

CREATE TABLE batches (
    id TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    status TEXT NOT NULL,
    total INTEGER NOT NULL,
    n_queued INTEGER NOT NULL DEFAULT 0,
    n_running INTEGER NOT NULL DEFAULT 0,
    n_succeeded INTEGER NOT NULL DEFAULT 0,
    n_failed INTEGER NOT NULL DEFAULT 0,
    n_canceled INTEGER NOT NULL DEFAULT 0,
    u_calls INTEGER NOT NULL DEFAULT 0,
    u_prompt INTEGER NOT NULL DEFAULT 0,
    u_completion INTEGER NOT NULL DEFAULT 0,
    -- Summed in nano-dollars, so the batch's cost is exact whatever order jobs finish in.
    u_cost_nanos INTEGER NOT NULL DEFAULT 0,
    -- 1 once a job with a known cost finished; NULL while no cost is known.
    u_priced INTEGER,
    created_at INTEGER NOT NULL,
    finished_at INTEGER,
    expires_at INTEGER,
    event_id TEXT
);

-- A webhook event; its delivery's state is its `work` row's (kind `delivery`).
CREATE TABLE deliveries (
    event_id TEXT PRIMARY KEY,
    event_type TEXT NOT NULL,
    subject TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    retry_from INTEGER
);

-- Every delivery attempt, by the job or batch the event is about.
CREATE TABLE delivery_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    subject_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    status_code INTEGER,
    error TEXT,
    outcome TEXT NOT NULL,
    at INTEGER NOT NULL,
    -- When a `retrying` attempt's event is tried again (unix ms).
    next_attempt_at INTEGER
);
CREATE INDEX delivery_log_subject ON delivery_log (subject_id, seq);

-- Idempotency keys of `POST /v1/jobs` (scope `job`) and `POST /v1/batches` (scope `batch`).
CREATE TABLE idempotency (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    id TEXT NOT NULL,
    hash TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;

CREATE TABLE result_cache (
    key TEXT PRIMARY KEY,
    result TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);

-- Workers: last heartbeat, capacity (jobs at once) and provider report (JSON).
CREATE TABLE workers (
    name TEXT PRIMARY KEY,
    beat_at INTEGER NOT NULL,
    capacity INTEGER NOT NULL DEFAULT 0,
    providers TEXT
);

-- A batch's MLflow parent run, once a worker created it (so racing workers agree on one).
CREATE TABLE mlflow_runs (
    subject_id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
