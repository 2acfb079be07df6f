//! Stackful fibers: green threads on their own stacks, switched in user
//! space. This is the groundwork: the context switch (`arch`) and guarded,
//! pooled stacks (`stack`). Spawning fibers on the scheduler (where a
//! started fiber never migrates between threads) and blocking-style I/O
//! build on it.

// The switch is exercised by its tests until fibers are wired into the
// scheduler.
#![cfg_attr(not(test), allow(dead_code, unused_imports))]

pub(crate) mod arch;
pub(crate) mod stack;
