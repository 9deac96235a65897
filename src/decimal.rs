//! Decimal digits without `core::fmt` and without allocating: for the
//! per-connection log line and for the child between clone and exec, where
//! only async-signal-safe work is allowed.

/// The decimal digits of `value`, written into `buffer`.
pub fn digits(value: u32, buffer: &mut [u8; 10]) -> &[u8] {
    let mut start = buffer.len();
    let mut rest = value;
    loop {
        start -= 1;
        buffer[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            return &buffer[start..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_match_std() {
        for value in [0, 7, 10, 65_535, 4_194_304, u32::MAX] {
            let mut buffer = [0u8; 10];
            assert_eq!(digits(value, &mut buffer), value.to_string().as_bytes());
        }
    }
}
