-- Lockgate's usage_records (lockgate/usage/tables.py, Alembic 0002_usage), column for column, in D1.
-- Timestamps are UTC text 'YYYY-MM-DD HH:MM:SS.ffffff' and booleans 0/1, as Lockgate's SQLite store keeps them.
CREATE TABLE IF NOT EXISTS usage_records (
  request_id VARCHAR(64) NOT NULL PRIMARY KEY,
  parent_request_id VARCHAR(64),
  attempt INTEGER,
  started_at DATETIME NOT NULL,
  endpoint VARCHAR(16) NOT NULL,
  model VARCHAR(200),
  key_id VARCHAR(64),
  user_id VARCHAR(200),
  team VARCHAR(200),
  provider VARCHAR(32),
  deployment VARCHAR(200),
  upstream_model VARCHAR(200),
  status INTEGER NOT NULL,
  error_type VARCHAR(64),
  error_message TEXT,
  streamed BOOLEAN NOT NULL,
  partial BOOLEAN NOT NULL,
  usage_estimated BOOLEAN NOT NULL,
  attempts INTEGER NOT NULL,
  prompt_tokens INTEGER NOT NULL,
  completion_tokens INTEGER NOT NULL,
  cached_tokens INTEGER NOT NULL,
  cache_creation_tokens INTEGER NOT NULL,
  reasoning_tokens INTEGER NOT NULL,
  cost_usd FLOAT,
  cost_unknown BOOLEAN NOT NULL,
  latency_ms FLOAT NOT NULL,
  ttft_ms FLOAT
);
CREATE INDEX IF NOT EXISTS ix_usage_records_started_at ON usage_records (started_at);
CREATE INDEX IF NOT EXISTS ix_usage_records_key_started ON usage_records (key_id, started_at);
CREATE INDEX IF NOT EXISTS ix_usage_records_team_started ON usage_records (team, started_at);
CREATE INDEX IF NOT EXISTS ix_usage_records_model_started ON usage_records (model, started_at);
CREATE INDEX IF NOT EXISTS ix_usage_records_parent ON usage_records (parent_request_id);
