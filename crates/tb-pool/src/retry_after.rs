//! `Retry-After` values: delta-seconds or an HTTP-date (RFC 7231 §7.1.3).

const MS_PER_DAY: i64 = 86_400_000;
const SHORT_DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const LONG_DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// The instant (ms since the epoch) a `Retry-After` header value points
/// to, given the time `now_ms` the response arrived.
///
/// Accepts delta-seconds (`120`) and HTTP-dates (IMF-fixdate
/// `Sun, 06 Nov 1994 08:49:37 GMT`, and the obsolete RFC 850 and asctime
/// forms recipients must accept). Surrounding whitespace is ignored;
/// anything else (negative or fractional seconds, other date layouts,
/// impossible dates, a weekday that does not match the date, overflow)
/// gives `None`. A date in the past is returned as is (it blocks nothing).
///
/// ```
/// use tb_pool::parse_retry_after;
///
/// assert_eq!(parse_retry_after("120", 1_000), Some(121_000));
/// assert_eq!(
///     parse_retry_after("Thu, 01 Jan 1970 00:01:00 GMT", 0),
///     Some(60_000)
/// );
/// assert_eq!(parse_retry_after("soon", 0), None);
/// ```
pub fn parse_retry_after(value: &str, now_ms: i64) -> Option<i64> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        let seconds: i64 = value.parse().ok()?;
        return now_ms.checked_add(seconds.checked_mul(1000)?);
    }
    parse_http_date(value, now_ms)
}

/// An HTTP-date as ms since the epoch: IMF-fixdate, RFC 850 or asctime
/// (case-sensitive, as RFC 7231 says). `now_ms` resolves the RFC 850
/// two-digit year: a year more than 50 years in the future means the
/// most recent past year with the same last two digits.
pub fn parse_http_date(value: &str, now_ms: i64) -> Option<i64> {
    if !value.is_ascii() {
        return None;
    }
    parse_imf_fixdate(value)
        .or_else(|| parse_rfc850(value, now_ms))
        .or_else(|| parse_asctime(value))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`
fn parse_imf_fixdate(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 29 || &s[3..5] != ", " || b[7] != b' ' || b[11] != b' ' || b[16] != b' ' {
        return None;
    }
    if &s[25..] != " GMT" {
        return None;
    }
    let weekday = SHORT_DAYS.iter().position(|d| *d == &s[..3])?;
    let day = digits(&s[5..7])?;
    let month = month(&s[8..11])?;
    let year = digits(&s[12..16])?;
    let secs = time_of_day(&s[17..25])?;
    instant(year, month, day, secs, weekday)
}

/// `Sunday, 06-Nov-94 08:49:37 GMT`
fn parse_rfc850(s: &str, now_ms: i64) -> Option<i64> {
    let (day_name, rest) = s.split_once(", ")?;
    let weekday = LONG_DAYS.iter().position(|d| *d == day_name)?;
    let b = rest.as_bytes();
    if b.len() != 22 || b[2] != b'-' || b[6] != b'-' || b[9] != b' ' || &rest[18..] != " GMT" {
        return None;
    }
    let day = digits(&rest[..2])?;
    let month = month(&rest[3..6])?;
    let yy = digits(&rest[7..9])?;
    let secs = time_of_day(&rest[10..18])?;
    let current = year_of(now_ms.div_euclid(MS_PER_DAY));
    let mut year = current - current.rem_euclid(100) + yy;
    if year > current + 50 {
        year -= 100;
    }
    instant(year, month, day, secs, weekday)
}

/// `Sun Nov  6 08:49:37 1994`
fn parse_asctime(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 24 || b[3] != b' ' || b[7] != b' ' || b[10] != b' ' || b[19] != b' ' {
        return None;
    }
    let weekday = SHORT_DAYS.iter().position(|d| *d == &s[..3])?;
    let month = month(&s[4..7])?;
    let day = match &s[8..10] {
        d if d.starts_with(' ') => digits(&d[1..])?,
        d => digits(d)?,
    };
    let secs = time_of_day(&s[11..19])?;
    let year = digits(&s[20..24])?;
    instant(year, month, day, secs, weekday)
}

/// A run of ASCII digits (no sign, not empty).
fn digits(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// 1-based month number of `Jan`…`Dec`.
fn month(s: &str) -> Option<i64> {
    let index = MONTHS.iter().position(|m| *m == s)?;
    i64::try_from(index).ok().map(|i| i + 1)
}

/// Seconds since midnight of `hh:mm:ss` (a leap second `60` is allowed).
fn time_of_day(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let (h, m, sec) = (digits(&s[..2])?, digits(&s[3..5])?, digits(&s[6..])?);
    (h <= 23 && m <= 59 && sec <= 60).then_some(h * 3600 + m * 60 + sec)
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
pub(crate) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The year of a day count since 1970-01-01 (Hinnant's `civil_from_days`).
pub(crate) fn year_of(days: i64) -> i64 {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400;
    if month <= 2 { year + 1 } else { year }
}

/// Checks the calendar and the weekday (0 = Monday), then converts.
fn instant(year: i64, month: i64, day: i64, secs: i64, weekday: usize) -> Option<i64> {
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    // 1970-01-01 was a Thursday (index 3).
    let actual = usize::try_from((days + 3).rem_euclid(7)).ok()?;
    if actual != weekday {
        return None;
    }
    days.checked_mul(MS_PER_DAY)?.checked_add(secs * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trips_over_four_centuries() {
        let start = days_from_civil(1800, 1, 1);
        let mut expected = (1800, 1, 1);
        for days in start..start + 146_097 {
            let (y, m, d) = expected;
            assert_eq!(days_from_civil(y, m, d), days);
            assert_eq!(year_of(days), y);
            expected = if d < days_in_month(y, m) {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
        }
    }

    #[test]
    fn epoch_and_known_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(year_of(-1), 1969);
    }
}
