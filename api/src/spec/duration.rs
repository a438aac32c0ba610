//! Durations as people write them (`500ms`, `2s`, `1m30s`, `1h`), kept as milliseconds.

/// Parses `500ms`, `2s`, `1m`, `1h` and sums like `1h2m3s4ms` into milliseconds.
/// A bare `0` is zero. Units may appear in any order but each at most once.
pub fn parse_duration_ms(text: &str) -> Result<u64, crate::Invalid> {
    parse_duration_ms_text(text).map_err(crate::Invalid)
}

fn parse_duration_ms_text(text: &str) -> Result<u64, String> {
    let hint = "expected a duration like 500ms, 2s, 1m30s or 1h";
    let s = text.trim();
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(format!("{hint}, found an empty string"));
    }
    let mut total: u64 = 0;
    let mut seen: Vec<&str> = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("{hint}, found `{text}`"));
        }
        let (number, tail) = rest.split_at(digits);
        let unit_len = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, tail) = tail.split_at(unit_len);
        let per_unit: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "" => return Err(format!("{hint}: `{text}` is missing a unit (ms, s, m, h)")),
            other => {
                return Err(format!(
                    "{hint}: unknown unit `{other}` in `{text}` (use ms, s, m or h)"
                ))
            }
        };
        if seen.contains(&unit) {
            return Err(format!("{hint}: unit `{unit}` appears twice in `{text}`"));
        }
        seen.push(unit);
        let number: u64 = number
            .parse()
            .map_err(|_| format!("duration `{text}` is too large"))?;
        total = number
            .checked_mul(per_unit)
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(|| format!("duration `{text}` is too large"))?;
        rest = tail;
    }
    Ok(total)
}

/// Writes milliseconds back in the shortest form [`parse_duration_ms`] reads.
pub fn format_duration_ms(ms: u64) -> String {
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    let mut rest = ms;
    for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_units_and_combinations() {
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("2s"), Ok(2_000));
        assert_eq!(parse_duration_ms("1m"), Ok(60_000));
        assert_eq!(parse_duration_ms("1h"), Ok(3_600_000));
        assert_eq!(parse_duration_ms("1m30s"), Ok(90_000));
        assert_eq!(parse_duration_ms("1h2m3s4ms"), Ok(3_723_004));
        assert_eq!(parse_duration_ms("0"), Ok(0));
        assert_eq!(parse_duration_ms("0s"), Ok(0));
    }

    #[test]
    fn rejects_bad_text() {
        for bad in [
            "5x",
            "",
            "s",
            "5",
            "1.5s",
            "-1s",
            "1s1s",
            "1 s",
            "99999999999999999999h",
        ] {
            assert!(parse_duration_ms(bad).is_err(), "{bad:?} should fail");
        }
        let err = parse_duration_ms("5x").expect_err("should fail");
        assert!(err.contains("unknown unit `x`"), "{err}");
    }

    #[test]
    fn formats_back() {
        for ms in [0, 1, 500, 1_000, 90_000, 3_723_004] {
            assert_eq!(parse_duration_ms(&format_duration_ms(ms)), Ok(ms));
        }
        assert_eq!(format_duration_ms(90_000), "1m30s");
    }
}
