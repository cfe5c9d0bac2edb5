//! Number formats that fit narrow columns.

/// `950`, `9.60k`, `38.6k`, `1.23M`: three significant digits from 1,000 up.
pub fn si(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let a = v.abs();
    let (scaled, unit) = match a {
        a if a < 1e3 => return format!("{v:.0}"),
        a if a < 1e6 => (v / 1e3, "k"),
        a if a < 1e9 => (v / 1e6, "M"),
        a if a < 1e12 => (v / 1e9, "G"),
        _ => (v / 1e12, "T"),
    };
    match scaled.abs() {
        s if s < 9.995 => format!("{scaled:.2}{unit}"),
        s if s < 99.95 => format!("{scaled:.1}{unit}"),
        _ => format!("{scaled:.0}{unit}"),
    }
}

pub fn count(v: u64) -> String {
    si(v as f64)
}

/// Flushes per folio and similar: three decimals, `n/a` when undefined, as in the text summary.
pub use crate::export::text::opt_ratio as ratio;

/// `00:01:03`, hours unbounded.
pub fn hms(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Percent of one CPU: `0.42%`, `12.5%`.
pub fn pct(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2}%")
    } else {
        format!("{v:.1}%")
    }
}

/// Nanoseconds as `850ns`, `1.2µs`, `3.4ms`, `2.0s`.
pub fn ns(v: f64) -> String {
    match v {
        v if v < 1e3 => format!("{v:.0}ns"),
        v if v < 1e6 => format!("{:.1}µs", v / 1e3),
        v if v < 1e9 => format!("{:.1}ms", v / 1e6),
        v => format!("{:.1}s", v / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn si_keeps_three_significant_digits() {
        assert_eq!(si(0.0), "0");
        assert_eq!(si(999.0), "999");
        assert_eq!(si(1_000.0), "1.00k");
        assert_eq!(si(9_600.0), "9.60k");
        assert_eq!(si(9_999.0), "10.0k");
        assert_eq!(si(38_612.0), "38.6k");
        assert_eq!(si(604_800.0), "605k");
        assert_eq!(si(1_234_567.0), "1.23M");
        assert_eq!(si(f64::NAN), "-");
        assert_eq!(count(1_500), "1.50k");
    }

    #[test]
    fn other_formats() {
        assert_eq!(ratio(Some(0.99479)), "0.995");
        assert_eq!(ratio(None), "n/a");
        assert_eq!(hms(3725.9), "01:02:05");
        assert_eq!(hms(-1.0), "00:00:00");
        assert_eq!(pct(0.4166), "0.42%");
        assert_eq!(pct(12.53), "12.5%");
        assert_eq!(ns(850.0), "850ns");
        assert_eq!(ns(1_250.0), "1.2µs");
        assert_eq!(ns(3.4e6), "3.4ms");
    }
}
