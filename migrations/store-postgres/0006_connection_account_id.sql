-- The app's own id of a connected account (Composio's `ca_…`).
ALTER TABLE connections ADD COLUMN account_id TEXT;
