//! Allocator settings, made once at start before any thread exists.
//!
//! glibc's malloc serves blocks of 128 KiB and more with `mmap` at first,
//! but each time such a block is freed it raises that threshold to the
//! block's size (up to 32 MiB). sled frees 512 KiB log buffers all the
//! time, and billbox frees packet bodies of a few hundred KiB, so after a
//! minute all of them come from the heap, where they are cut up and the
//! heap can no longer shrink. Fixing the threshold at glibc's own starting
//! value turns the adjustment off, so large transient buffers go back to
//! the system when freed (about 2 MB less peak RSS with 64 ports and a
//! 1,000,000-record backlog; see `docs/performance.md`).
//!
//! Freed memory inside the heap still counts in RSS until malloc hands the
//! whole pages back, which glibc does only at the heap's top. The store
//! churns through many 4 KiB chunk values, so the middle of the heap fills
//! with free pages; [`start_trimmer`] asks malloc to give them back
//! (`malloc_trim`) every [`TRIM_EVERY`], from a thread of its own: about
//! 5 MB less peak RSS in the same bench. A trim locks each malloc arena in
//! turn; under a full-speed drain it took 1.1 ms (median) to 15 ms (max).
//!
//! Elsewhere (musl, other systems) nothing is changed.

/// Blocks of this many bytes or more are mapped and unmapped on their own.
pub const MMAP_THRESHOLD: usize = 128 * 1024;

/// Applies the settings above; must run before any other thread starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune_allocator() {
    let threshold = libc::c_int::try_from(MMAP_THRESHOLD).expect("fits an int");
    // SAFETY: `mallopt` only sets a malloc parameter; it is called from
    // `main` before any thread exists, so no allocation runs concurrently.
    #[allow(unsafe_code)]
    let done = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, threshold) };
    if done != 1 {
        // Not fatal: billbox only uses more memory.
        eprintln!("billbox: setting malloc's mmap threshold failed; memory use may be higher");
    }
}

/// How often free pages inside the heap are given back to the system.
pub const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Starts the thread that gives free heap pages back every [`TRIM_EVERY`];
/// it runs until the process ends.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn start_trimmer() {
    let started = std::thread::Builder::new()
        .name("billbox-trim".into())
        .spawn(|| loop {
            std::thread::sleep(TRIM_EVERY);
            trim();
        });
    if let Err(e) = started {
        tracing::warn!(error = %e, "Starting the memory trimmer failed; memory use may be higher.");
    }
}

/// Gives free heap pages back to the system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() {
    // SAFETY: `malloc_trim` is thread-safe (it takes each arena's lock in
    // turn) and only hands free pages back to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Starts nothing: there is no trimming on this system.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn start_trimmer() {}

/// Applies the settings above (none apply on this system).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune_allocator() {}
