//! Resource quantities: CPU in millicores, memory in bytes (Kubernetes notation).

/// A decimal number split into its digits: `12.5` is `(125, 1)` (value = digits / 10^scale).
fn decimal(text: &str) -> Option<(u128, u32)> {
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i, f),
        None => (text, ""),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() && frac.is_empty() || !all_digits(int) || !all_digits(frac) {
        return None;
    }
    if frac.len() > 18 || int.len() > 20 {
        return None;
    }
    let digits: u128 = format!("{int}{frac}").parse().ok()?;
    Some((digits, u32::try_from(frac.len()).ok()?))
}

/// CPU: `250m` is 250 millicores, `0.5` is 500, `2` is 2000. Must be at least `1m`.
pub fn parse_cpu_millis(text: &str) -> Result<u64, crate::Invalid> {
    parse_cpu_millis_text(text).map_err(crate::Invalid)
}

fn parse_cpu_millis_text(text: &str) -> Result<u64, String> {
    let hint = "expected a CPU amount like 250m, 0.5 or 2";
    let s = text.trim();
    let (number, per_unit_millis) = match s.strip_suffix('m') {
        Some(n) => (n, 1u128),
        None => (s, 1_000u128),
    };
    let (digits, scale) = decimal(number).ok_or_else(|| format!("{hint}, found `{text}`"))?;
    let scaled = digits * per_unit_millis;
    let divisor = 10u128.pow(scale);
    if scaled % divisor != 0 {
        return Err(format!("`{text}` is finer than one millicore (1m)"));
    }
    let millis = u64::try_from(scaled / divisor).map_err(|_| format!("`{text}` is too large"))?;
    if millis == 0 {
        return Err("CPU must be greater than zero".to_owned());
    }
    Ok(millis)
}

/// Memory: a byte count with an optional suffix, binary (`Ki`, `Mi`, `Gi`, `Ti`, `Pi`)
/// or decimal (`k`, `M`, `G`, `T`, `P`). Fractions round up to whole bytes
/// (`1.5Ki` is 1536). Must be at least one byte.
pub fn parse_memory_bytes(text: &str) -> Result<u64, crate::Invalid> {
    parse_memory_bytes_text(text).map_err(crate::Invalid)
}

fn parse_memory_bytes_text(text: &str) -> Result<u64, String> {
    let hint = "expected a memory size like 64Mi, 1Gi, 500M or 1024";
    let s = text.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let multiplier: u128 = match suffix {
        "" => 1,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        other => {
            return Err(format!(
                "{hint}: unknown unit `{other}` in `{text}` (use Ki, Mi, Gi, Ti, k, M, G, T)"
            ))
        }
    };
    let (digits, scale) = decimal(number).ok_or_else(|| format!("{hint}, found `{text}`"))?;
    let scaled = digits
        .checked_mul(multiplier)
        .ok_or_else(|| format!("`{text}` is too large"))?;
    let bytes = scaled.div_ceil(10u128.pow(scale));
    let bytes = u64::try_from(bytes).map_err(|_| format!("`{text}` is too large"))?;
    if bytes == 0 {
        return Err("memory must be greater than zero".to_owned());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu() {
        assert_eq!(parse_cpu_millis("250m"), Ok(250));
        assert_eq!(parse_cpu_millis("0.5"), Ok(500));
        assert_eq!(parse_cpu_millis("2"), Ok(2000));
        assert_eq!(parse_cpu_millis("1.25"), Ok(1250));
        assert_eq!(parse_cpu_millis(".1"), Ok(100));
        for bad in [
            "", "m", "abc", "-1", "0", "0m", "0.0001", "1.5m", "2 cores", "1e3",
        ] {
            assert!(parse_cpu_millis(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn memory() {
        assert_eq!(parse_memory_bytes("64Mi"), Ok(64 * 1024 * 1024));
        assert_eq!(parse_memory_bytes("1Gi"), Ok(1 << 30));
        assert_eq!(parse_memory_bytes("500M"), Ok(500_000_000));
        assert_eq!(parse_memory_bytes("1024"), Ok(1024));
        assert_eq!(parse_memory_bytes("1.5Ki"), Ok(1536));
        assert_eq!(parse_memory_bytes("2k"), Ok(2000));
        for bad in [
            "12Qi",
            "",
            "Mi",
            "-1Mi",
            "0",
            "1 Mi",
            "1MiB",
            "99999999999Pi",
        ] {
            assert!(parse_memory_bytes(bad).is_err(), "{bad:?} should fail");
        }
        let err = parse_memory_bytes("12Qi").expect_err("should fail");
        assert!(err.contains("unknown unit `Qi`"), "{err}");
    }
}
