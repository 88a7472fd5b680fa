//! Chaos drills (being written).
