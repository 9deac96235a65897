//! System calls for the child between clone and exec, made without libc.
//!
//! libc's `syscall()` stores a failure in `errno`, which lives in the
//! calling thread's TLS block. A child started with `CLONE_VM` shares that
//! block with spawnd's thread, and a child that the parent does not wait
//! for (see `crate::daemon::spawn::launch`) runs while spawnd does: through libc its
//! failures would overwrite spawnd's `errno` under its feet. These calls
//! return `-errno` instead and touch no memory but their arguments.
//!
//! Only x86_64 and aarch64 have an implementation here; elsewhere
//! `AVAILABLE` is false and spawnd waits for every child's exec, so libc's
//! `syscall()` is safe to use (the parent is suspended meanwhile).

use std::ffi::c_long;

/// Whether `call` makes the system call itself (no libc, no `errno`).
pub const AVAILABLE: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

/// System call `number` with up to six arguments: the kernel's result,
/// `-errno` on failure.
///
/// # Safety
/// The arguments must be valid for the call, as with `syscall(2)`.
#[inline(always)]
#[cfg(target_arch = "x86_64")]
pub unsafe fn call(number: c_long, args: [usize; 6]) -> c_long {
    let result: c_long;
    // SAFETY: the x86_64 Linux system call convention: number in rax,
    // arguments in rdi, rsi, rdx, r10, r8, r9; the kernel clobbers rcx and
    // r11 and returns in rax. The caller vouches for the arguments.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") number => result,
            in("rdi") args[0],
            in("rsi") args[1],
            in("rdx") args[2],
            in("r10") args[3],
            in("r8") args[4],
            in("r9") args[5],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    result
}

/// See the x86_64 version.
///
/// # Safety
/// The arguments must be valid for the call, as with `syscall(2)`.
#[inline(always)]
#[cfg(target_arch = "aarch64")]
pub unsafe fn call(number: c_long, args: [usize; 6]) -> c_long {
    let result: c_long;
    // SAFETY: the aarch64 Linux convention: number in x8, arguments in
    // x0-x5, result in x0. The caller vouches for the arguments.
    unsafe {
        std::arch::asm!(
            "svc 0",
            in("x8") number,
            inlateout("x0") args[0] => result,
            in("x1") args[1],
            in("x2") args[2],
            in("x3") args[3],
            in("x4") args[4],
            in("x5") args[5],
            options(nostack),
        );
    }
    result
}

/// Through libc where no direct version exists; `AVAILABLE` is false there,
/// so this runs only while the parent is suspended.
///
/// # Safety
/// The arguments must be valid for the call, as with `syscall(2)`.
#[inline(always)]
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub unsafe fn call(number: c_long, args: [usize; 6]) -> c_long {
    // SAFETY: as for syscall(2); the caller vouches for the arguments.
    let result =
        unsafe { libc::syscall(number, args[0], args[1], args[2], args[3], args[4], args[5]) };
    if result < 0 {
        // SAFETY: reading this thread's errno right after the failed call.
        -c_long::from(unsafe { *libc::__errno_location() })
    } else {
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_and_errors_come_back_without_errno() {
        // SAFETY: getpid takes no arguments.
        let pid = unsafe { call(libc::SYS_getpid, [0; 6]) };
        assert_eq!(pid, i64::from(std::process::id()) as c_long);
        // SAFETY: errno is this thread's; set it to a marker first.
        unsafe { *libc::__errno_location() = 12345 };
        // SAFETY: close of a descriptor number that is never open.
        let closed = unsafe { call(libc::SYS_close, [1 << 30, 0, 0, 0, 0, 0]) };
        assert_eq!(closed, -(libc::EBADF as c_long));
        if AVAILABLE {
            // SAFETY: reading this thread's errno.
            let errno = unsafe { *libc::__errno_location() };
            assert_eq!(errno, 12345, "errno was written");
        }
    }
}
