//! Human durations in config files: `90s`, `15m`, `8h`, `1h30m`, `7d`, `250ms`.

use std::time::Duration;

/// Parses a duration such as `8h` or `1h30m`; the message of the error says what is expected.
pub fn parse(text: &str) -> Result<Duration, String> {
    let expected = "expected a duration such as \"90s\", \"15m\", \"8h\", \"1h30m\" or \"250ms\"";
    let text = text.trim();
    if text.is_empty() {
        return Err(expected.to_string());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("\"{text}\": {expected}"));
        }
        let number: u64 = rest[..digits].parse().map_err(|_| format!("\"{text}\": number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.saturating_mul(60)),
            "h" => Duration::from_secs(number.saturating_mul(3600)),
            "d" => Duration::from_secs(number.saturating_mul(86_400)),
            _ => return Err(format!("\"{text}\": {expected}")),
        };
        total = total.saturating_add(part);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_combinations() {
        assert_eq!(parse("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("7d"), Ok(Duration::from_secs(7 * 86_400)));
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for bad in ["", "8", "h", "8 hours", "-1s", "1.5h"] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
