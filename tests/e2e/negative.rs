//! Negative protocol tests (being written).
