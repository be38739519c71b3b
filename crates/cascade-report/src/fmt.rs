//! Number formatting for tables: thousands separators, byte sizes, fixed significant digits.

use serde_json::Value;

/// `1234567` → `1,234,567`.
pub fn int(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (idx, c) in digits.chars().enumerate() {
        if idx > 0 && (digits.len() - idx).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes with a binary unit: `1.5 MiB`.
pub fn bytes(value: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut size = value as f64;
    let mut unit = 0;
    while size >= 1024.0 && unit + 1 < UNITS.len() {
        size /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{value} B") } else { format!("{size:.1} {}", UNITS[unit]) }
}

/// A float with about four significant digits, integers without decimals.
pub fn num(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    let abs = value.abs();
    if abs >= 1e6 {
        format!("{value:.3e}")
    } else if abs >= 1000.0 || value.fract() == 0.0 {
        let sign = if value < 0.0 { "-" } else { "" };
        format!("{sign}{}", int(abs.round() as u64))
    } else if abs >= 10.0 {
        format!("{value:.2}")
    } else if abs >= 0.01 {
        format!("{value:.3}")
    } else {
        format!("{value:.2e}")
    }
}

/// A share as a percentage: `12.3%`.
pub fn pct(part: f64, whole: f64) -> String {
    if whole > 0.0 { format!("{:.1}%", 100.0 * part / whole) } else { "n/a".into() }
}

/// The number at `pointer` in `value`.
pub fn get(value: &Value, pointer: &str) -> Option<f64> {
    value.pointer(pointer).and_then(Value::as_f64)
}

/// The number at `pointer` formatted with [`num`], or `?`.
pub fn show(value: &Value, pointer: &str) -> String {
    get(value, pointer).map_or_else(|| "?".to_owned(), num)
}

/// The integer at `pointer` with separators, or `?`.
pub fn show_int(value: &Value, pointer: &str) -> String {
    value.pointer(pointer).and_then(Value::as_u64).map_or_else(|| "?".to_owned(), int)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(int(1_234_567), "1,234,567");
        assert_eq!(int(12), "12");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(num(1.23456), "1.235");
        assert_eq!(num(12345.0), "12,345");
        assert_eq!(num(-2.0), "-2");
        assert_eq!(num(0.001234), "1.23e-3");
        assert_eq!(pct(1.0, 8.0), "12.5%");
    }
}
