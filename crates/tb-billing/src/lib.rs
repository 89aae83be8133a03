//! What a call used and what it cost.
//!
//! - [`usage`]: usage extraction from JSON answers and from SSE streams (a
//!   tap that watches forwarded events without delaying or storing them).
//! - [`cost`]: the money: estimate, reported cost, savings baseline.
//! - [`audit`]: the seller audit: per-seller figures and billing findings.
//! - [`settlement`]: a marketplace seller's settlement, sanitised field by field.
//! - [`image`]: the image fields of a record (the seller's breakdown first,
//!   then the usage; per-image cost = ceil(total ÷ count)).
//! - [`record`]: the call record, one per proxied request, and its
//!   one-line form for logs and `tokenbuddyd calls`.
//!
//! Everything here is pure: values in, values out, no clock, no I/O.

pub mod audit;
pub mod cost;
pub mod image;
pub mod record;
pub mod series;
pub mod settlement;
pub mod usage;
pub mod video;
