//! The control plane (being written).
