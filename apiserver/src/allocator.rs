//! Allocator settings for the server process: called first thing by the binary, before the runtime's threads.
//!
//! glibc gives threads their own malloc arenas (up to 8 per core) and keeps what a request freed in the arena of
//! the worker that served it. A large request (a 20,000-item patch is ~60-75 MB of JSON values and field sets
//! while it is merged) served by one worker and the next by another then add up: the peak RSS of the same two
//! server-side applies varied from +97 to +168 MiB run to run. With one arena the memory one request freed serves
//! the next, and the same case peaks at +89 MiB every run. Small allocations still come from each thread's cache
//! (glibc's tcache) without the arena's lock; create, get and update cost the same server CPU per request within
//! noise on two cores (hack/bench-api.sh; figures in storage/BENCH.md). Contention on many cores is not measured.

/// Arenas for the whole process.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENA_MAX: libc::c_int = 1;

/// Applies the setting; call before any other thread starts (glibc's `mallopt` is not thread-safe). A no-op off
/// glibc.
pub fn one_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter to a valid value; the caller runs it before other threads.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX);
    }
}
