//! Small measuring helpers shared by the fiber examples.

/// The process's resident set size, in bytes.
#[allow(dead_code)] // not every example measures memory
pub(crate) fn rss_bytes() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// The median of `v` (the upper one of an even count).
#[allow(dead_code)] // not every example takes medians
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}
