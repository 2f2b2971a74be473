//! Per-type normalisation, so that the same person's identifier is written one way.

use super::id::IdType;

/// Normalises `raw` as an identifier of `kind`; `None` when it cannot be one (an email without
/// `@`, a phone number that is not E.164 after normalisation, an empty value).
///
/// - email: trimmed, lower-cased, one `@` with text on both sides;
/// - phone: E.164 (`+` and 8–15 digits); separators (space, `-`, `.`, `(`, `)`) removed; `00`
///   becomes `+`; a national number (leading `0`) takes `default_country` (a calling code such
///   as `33`), without its leading `0`;
/// - others: trimmed.
pub fn normalize(kind: &IdType, raw: &str, default_country: Option<&str>) -> Option<String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return None;
    }
    match kind {
        IdType::Email => email(trimmed),
        IdType::Phone => phone(trimmed, default_country),
        _ => Some(trimmed.to_owned()),
    }
}

fn email(text: &str) -> Option<String> {
    let lower = text.to_lowercase();
    let (local, domain) = lower.split_once('@')?;
    let valid = !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && !lower.chars().any(char::is_whitespace);
    valid.then_some(lower)
}

fn phone(text: &str, default_country: Option<&str>) -> Option<String> {
    let mut digits = String::with_capacity(text.len());
    let mut international = false;
    for (i, c) in text.chars().enumerate() {
        match c {
            '+' if i == 0 => international = true,
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    if !international {
        if let Some(rest) = digits.strip_prefix("00") {
            digits = rest.to_owned();
        } else if let Some(national) = digits.strip_prefix('0') {
            let country = default_country?.trim_start_matches('+');
            digits = format!("{country}{national}");
        } else {
            return None;
        }
    }
    ((8..=15).contains(&digits.len()) && !digits.starts_with('0')).then(|| format!("+{digits}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(
            normalize(&IdType::Email, "  Jane.Doe@Example.COM ", None).as_deref(),
            Some("jane.doe@example.com")
        );
        for bad in ["jane", "@x.com", "a@", "a b@x.com", "a@b@c"] {
            assert_eq!(normalize(&IdType::Email, bad, None), None, "{bad}");
        }
    }

    #[test]
    fn phones() {
        let fr = Some("33");
        for (raw, want) in [
            ("+33 6 12 34 56 78", "+33612345678"),
            ("0033 6 12 34 56 78", "+33612345678"),
            ("06.12.34.56.78", "+33612345678"),
            ("+1 (415) 555-0100", "+14155550100"),
        ] {
            assert_eq!(
                normalize(&IdType::Phone, raw, fr).as_deref(),
                Some(want),
                "{raw}"
            );
        }
        assert_eq!(
            normalize(&IdType::Phone, "06 12 34 56 78", None),
            None,
            "no country"
        );
        assert_eq!(normalize(&IdType::Phone, "+33 6x", fr), None);
        assert_eq!(normalize(&IdType::Phone, "+12", fr), None, "too short");
    }

    #[test]
    fn other_types_are_trimmed() {
        assert_eq!(
            normalize(&IdType::UserId, " 42 ", None).as_deref(),
            Some("42")
        );
        assert_eq!(normalize(&IdType::UserId, "  ", None), None);
    }
}
