"""Reference for tests/monitoring.rs: the Python tool's task_monitor table as SQLAlchemy creates it.

The model is the Python tool's (douyin-api.md section 11): task_id String(64) primary key,
status String(32), last_sync_time / last_heartbeat DateTime, target_command String(32),
error_message Text, created_at / updated_at DateTime. Prints the CREATE TABLE statement SQLAlchemy
emits for PostgreSQL (what Base.metadata.create_all() ran).
"""
from sqlalchemy import Column, DateTime, String, Text
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import declarative_base
from sqlalchemy.schema import CreateTable

Base = declarative_base()


class TaskMonitor(Base):
    __tablename__ = "task_monitor"
    task_id = Column(String(64), primary_key=True)
    status = Column(String(32))
    last_sync_time = Column(DateTime)
    last_heartbeat = Column(DateTime)
    target_command = Column(String(32))
    error_message = Column(Text)
    created_at = Column(DateTime)
    updated_at = Column(DateTime)


print(CreateTable(TaskMonitor.__table__).compile(dialect=postgresql.dialect()))
