//! The provider-config installer (being written).
