//! The allocator's settings for a long-running server (glibc's malloc).
//!
//! Measured at 100k issues (docs/performance.md, issue 15): with glibc's defaults the
//! server's resident memory rose with every write and was not given back, while the
//! heap in use stayed near 64 MB (heaptrack). Two defaults make the difference:
//! - up to eight arenas per core, one taken by each thread that allocates (tokio's
//!   workers and blocking threads, the git-index and gc threads), each keeping what
//!   was freed in it for its own later use;
//! - a threshold for `mmap`ed blocks that rises to the largest block freed so far, so
//!   the large short-lived buffers (the git index written at each flush is 12 MB at
//!   100k issues) soon come from the arenas instead, and stay there once freed.
//!
//! Two arenas, and a fixed threshold (blocks of 512 KB and more are mapped and unmapped
//! again), keep the resident set near what is in use. An operator's own
//! `MALLOC_ARENA_MAX` or `MALLOC_MMAP_THRESHOLD_` wins.

/// Apply the settings above; once, at the start of `main`, before any thread starts.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let unset = |name: &str| std::env::var_os(name).is_none();
        // SAFETY: mallopt sets glibc's process-wide malloc parameters; called before
        // the process has threads.
        unsafe {
            if unset("MALLOC_ARENA_MAX") {
                libc::mallopt(libc::M_ARENA_MAX, 2);
            }
            if unset("MALLOC_MMAP_THRESHOLD_") {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 512 << 10);
            }
            if unset("MALLOC_TRIM_THRESHOLD_") {
                libc::mallopt(libc::M_TRIM_THRESHOLD, 4 << 20);
            }
        }
    }
}
