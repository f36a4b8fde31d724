//! Human sizes in config and policy files: `512KiB`, `64MiB`, `1GiB`, `100MB`, or a plain number of bytes.

/// Parses a size such as `64KiB` or `10MB` into bytes; the error says what is expected.
pub fn parse(text: &str) -> Result<u64, String> {
    let expected = "expected a size such as \"64KiB\", \"10MiB\", \"1GiB\" or a number of bytes";
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    if digits == 0 {
        return Err(format!("\"{text}\": {expected}"));
    }
    let number: u64 = text[..digits].parse().map_err(|_| format!("\"{text}\": number too large"))?;
    let unit: u64 = match text[digits..].trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1_000,
        "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        "TB" => 1_000_000_000_000,
        "TiB" => 1 << 40,
        _ => return Err(format!("\"{text}\": {expected}")),
    };
    number.checked_mul(unit).ok_or_else(|| format!("\"{text}\": too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse("512"), Ok(512));
        assert_eq!(parse("64KiB"), Ok(65_536));
        assert_eq!(parse("10MB"), Ok(10_000_000));
        assert_eq!(parse("1GiB"), Ok(1 << 30));
        assert_eq!(parse(" 2 MiB "), Ok(2 << 20));
    }

    #[test]
    fn rejects_what_is_not_a_size() {
        for bad in ["", "MiB", "10 parsecs", "-1", "1.5GiB", "99999999999999999999", "99999999TiB"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
