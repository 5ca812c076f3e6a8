//! Alertmanager: its API (`POST /api/v2/alerts`, firing alerts re-sent, `endsAt` on resolve)
//! and a generic webhook carrying Alertmanager's webhook JSON (version 4).
