//! Diesel table definitions of the audit trail (see `migrations/`).

diesel::table! {
    webhook_events (id) {
        id -> Uuid,
        source -> Text,
        event_type -> Nullable<Text>,
        idempotency_key -> Text,
        stream_id -> Text,
        status -> Text,
        attempts -> Int4,
        last_error -> Nullable<Text>,
        received_at -> Timestamptz,
        delivered_at -> Nullable<Timestamptz>,
        content_type -> Nullable<Text>,
        headers -> Jsonb,
        destinations -> Int4,
        replay_of -> Nullable<Uuid>,
        only_destination -> Nullable<Text>,
    }
}

diesel::table! {
    event_payloads (event_id, received_at) {
        event_id -> Uuid,
        received_at -> Timestamptz,
        payload -> Bytea,
    }
}

diesel::table! {
    delivery_attempts (id) {
        id -> Int8,
        event_id -> Uuid,
        destination -> Text,
        attempt -> Int4,
        status_code -> Nullable<Int4>,
        duration_ms -> Int4,
        error -> Nullable<Text>,
        attempted_at -> Timestamptz,
        received_at -> Timestamptz,
    }
}

diesel::table! {
    deliveries (event_id, destination) {
        event_id -> Uuid,
        destination -> Text,
        status -> Text,
        attempts -> Int4,
        last_error -> Nullable<Text>,
        last_status_code -> Nullable<Int4>,
        updated_at -> Timestamptz,
        delivered_at -> Nullable<Timestamptz>,
        received_at -> Timestamptz,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    webhook_events,
    event_payloads,
    delivery_attempts,
    deliveries
);
