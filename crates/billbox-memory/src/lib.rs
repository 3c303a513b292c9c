//! Keeping the billbox daemon's resident memory down.
//!
//! Freed memory inside the heap still counts in RSS until malloc hands
//! whole pages back, which glibc does on its own only at the heap's top.
//! The store churns through many 4 KiB chunk values, so the middle of the
//! heap fills with free pages; [`start_trimmer`] asks malloc to give them
//! back (`malloc_trim`) every [`TRIM_EVERY`], from a thread of its own.
//! With 64 ports and a 1,000,000-record backlog that is about 5 MB less
//! peak RSS (see `docs/performance.md`). A trim locks each malloc arena in
//! turn; under a full-speed drain one took 1.1 ms (median) to 15 ms (max).
//! The benches start the trimmer too, so they measure what the daemon
//! ships. Elsewhere than Linux with glibc nothing is done.
//!
//! The only `unsafe` code in billbox is here: one libc call.
#![deny(unsafe_code)]

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
