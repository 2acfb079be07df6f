//! Signals: `ctrl_c()` and Unix signal streams.
