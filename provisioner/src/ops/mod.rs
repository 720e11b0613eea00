//! Operations on running environments built from the release and deploy layers:
//! promotion between environments (gated on the source's health), rollback to an
//! earlier release, the bake that rolls a deploy back when alarms fire, recovery of
//! stuck stacks, the dead-letter queue (peek, redrive), data export, verify and import,
//! the phased decommission, the end-to-end probe, and the doctor that says whether the caller can deploy at all.

pub mod alarms;
pub mod bake;
pub mod data;
pub mod decommission;
pub mod dlq;
pub mod doctor;
pub mod ingest_client;
pub mod probe;
pub mod promote;
pub mod recover;
pub mod replay;
pub mod rollback;
