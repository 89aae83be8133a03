//! Seller credit (being written).
