-- The app's own id of a connected account (Composio's `ca_…`): how a delivery that
-- names its account (`metadata.connected_account_id`) finds the worker using it.
ALTER TABLE connections ADD COLUMN account_id TEXT;
