//! The binary's use of the C allocator (glibc): keep freed memory for reuse within a step, give
//! it back between steps. The library never touches the allocator; an embedding program keeps
//! its own.

/// Keeps freed memory in the process for reuse. Called once, before any thread starts.
///
/// A berserkr step allocates and frees buffers of megabytes over and over (query states,
/// Parquet pages, parsed chunks). By default glibc hands each large freed block back to the
/// kernel, and the next allocation faults its pages in again one by one. Here blocks up to
/// 32 MiB come from the heap, and the heap is neither trimmed nor grown by less than 64 MiB. A
/// gold refresh of 5,000,000 generated rows went from 317,000 to 269,000 page faults and from
/// 0.79 to 0.63 s of system time (median of 6).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune() {
    // SAFETY: mallopt only sets the allocator's parameters; no thread runs yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

/// Gives the memory the last step freed back to the kernel, so that the next step of the same
/// process (`lake refresh all`, `lake run`) starts from what is still in use, not from the
/// previous step's peak.
///
/// Without it, what [`tune`] keeps for reuse is kept across steps too: at 50,000,000 rows
/// `lake refresh all` peaked at 3.5 GiB, silver's memory (freed at its end) still held by the
/// process while gold took its own; with it, 2.3 GiB, gold's peak.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn give_back() {
    // SAFETY: malloc_trim only returns free pages of the heaps to the kernel; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Keeps the platform's allocator as it is (its parameters are glibc's).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune() {}

/// Nothing to give back explicitly off glibc.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn give_back() {}
