-- The Python tool's monitoring row, one per TASK_ID, with its exact column types (its SQLAlchemy
-- model: String(64) primary key, String(32), DateTime = naive TIMESTAMP, Text). A table the Python
-- tool made is used in place: this creates one only where there is none.
-- Timestamps are naive and this job writes them in UTC (as the Python tool did in its Docker
-- image, whose local time was UTC), whatever the zone of the host or of the database session.
CREATE TABLE IF NOT EXISTS task_monitor (
    task_id        VARCHAR(64) NOT NULL,
    status         VARCHAR(32),
    last_sync_time TIMESTAMP WITHOUT TIME ZONE,
    last_heartbeat TIMESTAMP WITHOUT TIME ZONE,
    target_command VARCHAR(32),
    error_message  TEXT,
    created_at     TIMESTAMP WITHOUT TIME ZONE,
    updated_at     TIMESTAMP WITHOUT TIME ZONE,
    PRIMARY KEY (task_id)
);
