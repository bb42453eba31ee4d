//! Process-wide set-up that must happen once, before anything else runs: the TLS crypto
//! provider and the allocator's treatment of large buffers.

/// Installs rustls' process-wide crypto provider. Both `ring` and `aws-lc-rs` can end up in the
/// dependency graph, and rustls then refuses to choose one by itself at the first TLS handshake.
pub fn install_crypto_provider() {
    // An Err only means a provider is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The allocator of a process that keeps large caches, declared by its binary with
/// `#[global_allocator]`: mimalloc. A cache of 100,000 jobs and pods is millions of small
/// strings and structs; glibc adds a header to each and rounds every one up to at least 32
/// bytes, mimalloc neither. Measured with 100,000 stored jobs, the operator's resident memory
/// was 297 to 301 MB in every run against 306 to 332 MB on glibc (docs/benchmarks.md).
#[cfg(feature = "compact-heap")]
pub use mimalloc::MiMalloc as CompactHeap;

/// Hands the heap's free pages back to the system (the allocator keeps what a start-up's lists
/// freed otherwise): called once the first lists are parsed and stripped.
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it is safe at any time.
    unsafe {
        libc::malloc_trim(0);
    }
    #[cfg(feature = "compact-heap")]
    // SAFETY: mi_collect only frees and purges memory no allocation holds.
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
}

/// For a runtime's `on_thread_park`: a worker thread with nothing to do hands back the pages
/// its heap no longer uses, at most once every [`COLLECT_EVERY`]. mimalloc frees a block that
/// another thread freed (a list parsed on one worker and dropped on another) only when the
/// thread that owns it next allocates or collects; a worker that idles after the start-up's
/// lists otherwise keeps their pages resident until work comes.
pub fn collect_when_idle() {
    #[cfg(feature = "compact-heap")]
    {
        use std::cell::Cell;
        use std::time::Instant;
        thread_local!(static LAST: Cell<Option<Instant>> = const { Cell::new(None) });
        let now = Instant::now();
        let due = LAST.with(|last| {
            let due = last
                .get()
                .is_none_or(|t| now.duration_since(t) >= COLLECT_EVERY);
            if due {
                last.set(Some(now));
            }
            due
        });
        if due {
            // SAFETY: mi_collect only frees and purges memory no allocation holds.
            unsafe { libmimalloc_sys::mi_collect(false) };
        }
    }
}

/// How often an idle worker thread collects at most ([`collect_when_idle`]).
pub const COLLECT_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Makes the allocator hand large buffers (initial list bodies of tens of MB) back to the system
/// when they are freed. glibc otherwise raises its mmap threshold after the first such free, so
/// later list buffers come from the heap and the process keeps their pages after start-up.
/// It also caps glibc's arenas at two: by default each of tokio's worker threads may get its own
/// (8 per core), and each keeps its freed pages; measured with 100,000 stored jobs this cut the
/// operator's resident memory by about 35 MB at no measurable cost in latency.
pub fn return_large_buffers_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called once at start, before other
    // threads allocate.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    // mimalloc purges freed pages lazily, when the thread that freed them allocates again: a
    // start-up's list buffers, freed by a watch that then idles, stayed resident. Purged at
    // once, and with arenas committed as they are used rather than up front, they are gone when
    // the caches are ready (with 100,000 stored jobs: 293 MB with these two options, 328 MB
    // without, in one pair of runs).
    #[cfg(feature = "compact-heap")]
    // SAFETY: mi_option_set only sets allocator parameters, before the caches allocate.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
        libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
    }
}

/// mimalloc's (v3) `mi_option_purge_delay`, which its Rust binding does not name: the
/// milliseconds between freeing a page and returning it to the system (1,000 by default).
#[cfg(feature = "compact-heap")]
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// mimalloc's (v3) `mi_option_arena_eager_commit`: whether an arena's memory is committed when
/// it is reserved (2 by default: where the system overcommits, as Linux does).
#[cfg(feature = "compact-heap")]
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

#[cfg(all(test, feature = "compact-heap"))]
mod tests {
    use super::*;

    #[test]
    fn the_options_set_are_the_ones_named() {
        // SAFETY: reading and setting allocator options.
        unsafe {
            // Their defaults tell them from their neighbours (use_numa_nodes 0,
            // deprecated_eager_commit_delay 1; deprecated_eager_commit 1, purge_decommits 1).
            assert_eq!(libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY), 1000);
            assert_eq!(
                libmimalloc_sys::mi_option_get(MI_OPTION_ARENA_EAGER_COMMIT),
                2
            );
            return_large_buffers_to_the_system();
            assert_eq!(libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY), 0);
            assert_eq!(
                libmimalloc_sys::mi_option_get(MI_OPTION_ARENA_EAGER_COMMIT),
                0
            );
        }
    }
}

/// `flag` when given, else the namespace the process runs in (`POD_NAMESPACE`, which the chart
/// sets from the pod's own), else `None`.
pub fn flag_or_own_namespace(flag: Option<&str>) -> Option<String> {
    flag.map(str::to_owned).or_else(|| {
        std::env::var("POD_NAMESPACE")
            .ok()
            .filter(|n| !n.is_empty())
    })
}
