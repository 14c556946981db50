//! Reading back the text forms the formats write for dates and times (`YYYY-MM-DD`,
//! `[-]HHH:MM:SS[.f]`, `YYYY-MM-DDTHH:MM:SS[.f][Z]`). The inverse of the `write` functions of
//! [`crate::value`]; zero dates are accepted, as MySQL stores them.

use crate::value::{Date, DateTime};

/// `YYYY-MM-DD`.
pub(crate) fn parse_date(text: &str) -> Option<Date> {
    let mut parts = text.splitn(3, '-');
    let year = parts.next()?;
    let month = parts.next()?;
    let day = parts.next()?;
    if year.len() != 4 || month.len() != 2 || day.len() != 2 {
        return None;
    }
    Some(Date {
        year: year.parse().ok()?,
        month: month.parse().ok()?,
        day: day.parse().ok()?,
    })
}

/// `.ffffff` (1 to 6 digits, or none) as microseconds.
fn parse_fraction(text: Option<&str>) -> Option<u32> {
    let Some(digits) = text else { return Some(0) };
    if digits.is_empty() || digits.len() > 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits.parse::<u32>().ok()? * 10u32.pow(6 - digits.len() as u32))
}

/// `YYYY-MM-DD?HH:MM:SS[.f]`, the separator being `T` or a space; a trailing `Z` is allowed.
pub(crate) fn parse_datetime(text: &str) -> Option<DateTime> {
    let text = text.strip_suffix('Z').unwrap_or(text);
    if text.len() < 19 || !matches!(text.as_bytes()[10], b'T' | b' ') {
        return None;
    }
    let date = parse_date(&text[..10])?;
    let (clock, fraction) = match text[11..].split_once('.') {
        Some((clock, fraction)) => (clock, Some(fraction)),
        None => (&text[11..], None),
    };
    let mut parts = clock.split(':');
    let mut field = || -> Option<u8> {
        let part = parts.next()?;
        (part.len() == 2).then(|| part.parse().ok())?
    };
    let (hour, minute, second) = (field()?, field()?, field()?);
    Some(DateTime {
        date,
        hour,
        minute,
        second,
        micros: parse_fraction(fraction)?,
    })
}

/// A UTC time `YYYY-MM-DDTHH:MM:SS[.f]Z` (or with a space) as microseconds since the epoch.
pub fn parse_utc(text: &str) -> Option<i64> {
    let dt = parse_datetime(text)?;
    let valid = (1..=12).contains(&dt.date.month)
        && (1..=31).contains(&dt.date.day)
        && dt.hour < 24
        && dt.minute < 60
        && dt.second < 60;
    valid.then(|| crate::value::datetime_to_timestamp(&dt))
}

/// `[-]HHH:MM:SS[.f]` as signed microseconds.
pub(crate) fn parse_time(text: &str) -> Option<i64> {
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (clock, fraction) = match text.split_once('.') {
        Some((clock, fraction)) => (clock, Some(fraction)),
        None => (text, None),
    };
    let mut parts = clock.split(':');
    let hours: i64 = parts.next()?.parse().ok()?;
    let minutes: i64 = parts.next()?.parse().ok()?;
    let seconds: i64 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || minutes > 59 || seconds > 59 {
        return None;
    }
    let micros =
        ((hours * 60 + minutes) * 60 + seconds) * 1_000_000 + i64::from(parse_fraction(fraction)?);
    Some(if negative { -micros } else { micros })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{write_time, DateTime};

    #[test]
    fn times_and_dates_read_back() {
        for micros in [
            0,
            -1,
            -(838 * 3600 + 59 * 60 + 59) * 1_000_000,
            90_000_500_000,
        ] {
            let mut text = String::new();
            write_time(&mut text, micros, 6);
            assert_eq!(parse_time(&text), Some(micros), "{text}");
        }
        let dt = parse_datetime("0000-00-00T00:00:00.5").unwrap();
        assert_eq!(dt.micros, 500_000);
        let mut text = String::new();
        DateTime { ..dt }.write(&mut text, ' ', 6);
        assert_eq!(text, "0000-00-00 00:00:00.500000");
        assert_eq!(parse_datetime("2024-02-29 23:59:59Z").unwrap().second, 59);
        assert!(parse_datetime("2024-02-29").is_none());
        assert!(parse_time("1:2").is_none());
    }
}
