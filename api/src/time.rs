//! RFC 3339 timestamps in UTC, from a civil-date conversion of Unix time
//! (Howard Hinnant's `civil_from_days`), to avoid a date crate for two
//! fields (the token service's `issued_at`, events' `timestamp`).

/// `2026-12-02T23:50:00Z`.
pub fn rfc3339(unix_seconds: u64) -> String {
    let (days, second_of_day) = (unix_seconds / 86_400, unix_seconds % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3_600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

/// `2026-12-02T23:50:00.123Z`.
pub fn rfc3339_millis(unix_ms: u64) -> String {
    let seconds = rfc3339(unix_ms / 1000);
    let whole = seconds.trim_end_matches('Z');
    format!("{whole}.{:03}Z", unix_ms % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_dates_across_leap_years() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_255_999), "2026-12-02T23:59:59Z");
        assert_eq!(
            rfc3339_millis(1_796_255_999_007),
            "2026-12-02T23:59:59.007Z"
        );
    }
}
