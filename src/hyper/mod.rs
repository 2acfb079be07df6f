//! hyper 1.x on this runtime.
