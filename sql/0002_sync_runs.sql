-- Run history: one row per run, written at its start and completed at its end (what the Python
-- tool's task_monitor heartbeat tried to be). A row with finished_at NULL is a run that is still
-- going or was killed (kill -9, OOM): the checkpoint tells how far it got.
CREATE TABLE IF NOT EXISTS sync_runs (
    id           bigserial PRIMARY KEY,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    accounts     text        NOT NULL,
    mode         text        NOT NULL,
    time_field   text        NOT NULL,
    window_start timestamptz,
    window_end   timestamptz,
    days         integer,
    orders       bigint,
    inserted     bigint,
    updated      bigint,
    pages        bigint,
    requests     bigint,
    retries      bigint,
    exit_code    integer,
    error        text,
    version      text        NOT NULL
);

CREATE INDEX IF NOT EXISTS ix_sync_runs_started_at ON sync_runs (started_at DESC);
