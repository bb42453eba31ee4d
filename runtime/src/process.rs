//! Process-wide set-up that must happen once, before anything else runs: the TLS crypto
//! provider and the allocator's treatment of large buffers.

/// Installs rustls' process-wide crypto provider. Both `ring` and `aws-lc-rs` can end up in the
/// dependency graph, and rustls then refuses to choose one by itself at the first TLS handshake.
pub fn install_crypto_provider() {
    // An Err only means a provider is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Makes the allocator hand large buffers (initial list bodies of tens of MB) back to the system
/// when they are freed. glibc otherwise raises its mmap threshold after the first such free, so
/// later list buffers come from the heap and the process keeps their pages after start-up.
pub fn return_large_buffers_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called once at start, before other
    // threads allocate.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}
