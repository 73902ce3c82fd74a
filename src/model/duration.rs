//! Durations as the config and the chat write them.

use std::time::Duration;

/// Parses `30s`, `5m`, `4h`, `1d`, `250ms` and sums like `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "`{text}` is not a duration (examples: 30s, 5m, 4h, 1d)"
            ));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{text}`: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let secs_per: u64 = match unit {
            "ms" => {
                total += Duration::from_millis(n);
                continue;
            }
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86400,
            "" => return Err(format!("`{text}` needs a unit: ms, s, m, h or d")),
            other => {
                return Err(format!(
                    "`{text}`: unknown unit `{other}` (use ms, s, m, h or d)"
                ))
            }
        };
        let secs = n
            .checked_mul(secs_per)
            .ok_or_else(|| format!("`{text}` is too long"))?;
        total += Duration::from_secs(secs);
    }
    Ok(total)
}
