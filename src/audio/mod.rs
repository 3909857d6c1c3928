//! Audio input (being written).
