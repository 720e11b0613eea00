//! Operations on running environments built from the release and deploy layers:
//! promotion between environments (gated on the source's health) and rollback to an
//! earlier release.

pub mod alarms;
pub mod promote;
pub mod rollback;
