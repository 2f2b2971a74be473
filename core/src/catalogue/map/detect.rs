//! What a value is: its JSON type, what it means (a semantic type: an email, a URL, a date),
//! and whether it is personal data (a PII class), from the value and from the property's name.
//!
//! One rule for every reader of the map: detection is a pure function of the name and the value,
//! so the live map and a rebuild from the lake agree.

use serde::{Deserialize, Serialize};

/// The JSON type of a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JsonType {
    /// `null`.
    Null,
    /// `true` or `false`.
    Boolean,
    /// A number.
    Number,
    /// A string.
    String,
    /// An array (its items are the path `a[]`).
    Array,
    /// An object (its members are the paths `a.b`).
    Object,
}

impl JsonType {
    /// Every type, in the order of the map's counts.
    pub const ALL: [JsonType; 6] = [
        JsonType::Null,
        JsonType::Boolean,
        JsonType::Number,
        JsonType::String,
        JsonType::Array,
        JsonType::Object,
    ];

    /// The type of a value.
    pub fn of(value: &serde_json::Value) -> JsonType {
        use serde_json::Value;
        match value {
            Value::Null => JsonType::Null,
            Value::Bool(_) => JsonType::Boolean,
            Value::Number(_) => JsonType::Number,
            Value::String(_) => JsonType::String,
            Value::Array(_) => JsonType::Array,
            Value::Object(_) => JsonType::Object,
        }
    }

    /// Its name, as JSON Schema writes it.
    pub fn name(self) -> &'static str {
        match self {
            JsonType::Null => "null",
            JsonType::Boolean => "boolean",
            JsonType::Number => "number",
            JsonType::String => "string",
            JsonType::Array => "array",
            JsonType::Object => "object",
        }
    }

    /// Its place in [`JsonType::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// What a value means, when it is recognisable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Semantic {
    /// An email address.
    Email,
    /// A phone number (written with `+` or separators, 7–15 digits).
    Phone,
    /// An `http(s)` URL.
    Url,
    /// An RFC 3339 date-time.
    DateTime,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// A UUID.
    Uuid,
    /// An IPv4 or IPv6 address.
    Ip,
    /// An ISO 3166 alpha-2 country code.
    Country,
    /// An ISO 4217 currency code.
    Currency,
    /// A postal code (by the property's name).
    Postcode,
    /// A payment card number (13–19 digits passing the Luhn check).
    CardNumber,
    /// `"true"`, `"false"`, `"yes"`, `"no"` as a string.
    BooleanString,
    /// A number written as a string (`"12.50"`).
    NumberString,
}

impl Semantic {
    /// Every semantic type.
    pub const ALL: [Semantic; 13] = [
        Semantic::Email,
        Semantic::Phone,
        Semantic::Url,
        Semantic::DateTime,
        Semantic::Date,
        Semantic::Uuid,
        Semantic::Ip,
        Semantic::Country,
        Semantic::Currency,
        Semantic::Postcode,
        Semantic::CardNumber,
        Semantic::BooleanString,
        Semantic::NumberString,
    ];

    /// Its name in the map.
    pub fn name(self) -> &'static str {
        match self {
            Semantic::Email => "email",
            Semantic::Phone => "phone",
            Semantic::Url => "url",
            Semantic::DateTime => "date_time",
            Semantic::Date => "date",
            Semantic::Uuid => "uuid",
            Semantic::Ip => "ip",
            Semantic::Country => "country",
            Semantic::Currency => "currency",
            Semantic::Postcode => "postcode",
            Semantic::CardNumber => "card_number",
            Semantic::BooleanString => "boolean_string",
            Semantic::NumberString => "number_string",
        }
    }

    /// The personal data this kind of value is, if any.
    pub fn pii(self) -> Option<PiiKind> {
        match self {
            Semantic::Email => Some(PiiKind::Email),
            Semantic::Phone => Some(PiiKind::Phone),
            Semantic::Ip => Some(PiiKind::Ip),
            Semantic::CardNumber => Some(PiiKind::CardNumber),
            _ => None,
        }
    }
}

/// A kind of personal data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    /// A payment card number.
    CardNumber,
    /// A national id, tax number, passport or driving licence number.
    GovernmentId,
    /// A password, secret or token.
    Secret,
    /// An email address.
    Email,
    /// A phone number.
    Phone,
    /// A person's name.
    Name,
    /// A postal address (street, city, postcode).
    Address,
    /// A birth date.
    BirthDate,
    /// An IP address.
    Ip,
}

impl PiiKind {
    /// Its class, as the Privacy Portal's three colours: red for what harms on its own (card
    /// numbers, government ids, secrets), yellow for what identifies or reaches a person.
    pub fn class(self) -> PiiClass {
        match self {
            PiiKind::CardNumber | PiiKind::GovernmentId | PiiKind::Secret => PiiClass::Red,
            _ => PiiClass::Yellow,
        }
    }

    /// Its name in the map.
    pub fn name(self) -> &'static str {
        match self {
            PiiKind::CardNumber => "card_number",
            PiiKind::GovernmentId => "government_id",
            PiiKind::Secret => "secret",
            PiiKind::Email => "email",
            PiiKind::Phone => "phone",
            PiiKind::Name => "name",
            PiiKind::Address => "address",
            PiiKind::BirthDate => "birth_date",
            PiiKind::Ip => "ip",
        }
    }
}

/// How sensitive a property is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiClass {
    /// Not personal data.
    Green,
    /// Identifies or reaches a person: masked wherever the map is shown.
    Yellow,
    /// Harms on its own: masked, and flagged wherever it is found.
    Red,
}

/// The personal data a property's name says it holds (`email`, `traits.address.street`,
/// `phone_number`, `password`), from the last segment of its path.
pub fn pii_of_name(path: &str) -> Option<PiiKind> {
    let leaf = path
        .rsplit('.')
        .next()
        .unwrap_or(path)
        .trim_end_matches("[]");
    let words = words(leaf);
    let has = |w: &str| words.iter().any(|x| x == w);
    let joined = words.concat();
    let kind = if has("card") && (has("number") || has("num") || has("no")) || joined == "pan" {
        PiiKind::CardNumber
    } else if [
        "ssn",
        "passport",
        "nin",
        "taxid",
        "nationalid",
        "driverslicense",
    ]
    .iter()
    .any(|w| joined.contains(w))
    {
        PiiKind::GovernmentId
    } else if ["password", "secret", "apikey", "accesstoken", "authtoken"]
        .iter()
        .any(|w| joined.contains(w))
    {
        PiiKind::Secret
    } else if has("email") || joined == "emailaddress" {
        PiiKind::Email
    } else if has("phone") || has("mobile") || joined.contains("phonenumber") {
        PiiKind::Phone
    } else if [
        "firstname",
        "lastname",
        "fullname",
        "givenname",
        "familyname",
        "surname",
    ]
    .iter()
    .any(|w| joined == *w)
        || joined == "name" && path.contains("traits")
    {
        PiiKind::Name
    } else if has("street")
        || has("address")
        || joined.starts_with("zip")
        || joined.contains("postcode")
        || joined.contains("postalcode")
        || has("city") && path.contains("address")
    {
        PiiKind::Address
    } else if joined == "birthday" || joined.contains("birthdate") || joined == "dob" {
        PiiKind::BirthDate
    } else if joined == "ip" || joined == "ipaddress" {
        PiiKind::Ip
    } else {
        return None;
    };
    Some(kind)
}

/// The words of a name: `firstName`, `first_name`, `First Name` are `first`, `name`.
pub(crate) fn words(name: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut previous_lower = false;
    for c in name.chars() {
        if !c.is_alphanumeric() {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            previous_lower = false;
            continue;
        }
        if c.is_uppercase() && previous_lower && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        previous_lower = c.is_lowercase() || c.is_ascii_digit();
        word.extend(c.to_lowercase());
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// What a string value means, if recognisable (`path` gives the postcode hint).
pub fn semantic_of_text(path: &str, text: &str) -> Option<Semantic> {
    let text = text.trim();
    if text.is_empty() || text.len() > 2_048 {
        return None;
    }
    let named = |hints: &[&str]| {
        let leaf = words(path.rsplit('.').next().unwrap_or(path)).concat();
        hints.iter().any(|h| leaf.contains(h))
    };
    let semantic = if is_email(text) {
        Semantic::Email
    } else if is_url(text) {
        Semantic::Url
    } else if crate::timestamp::parse(text).is_ok() {
        Semantic::DateTime
    } else if is_date(text) {
        Semantic::Date
    } else if is_uuid(text) {
        Semantic::Uuid
    } else if text.parse::<std::net::IpAddr>().is_ok() {
        Semantic::Ip
    } else if is_card_number(text) {
        Semantic::CardNumber
    } else if is_phone(text) {
        Semantic::Phone
    } else if named(&["zip", "postcode", "postalcode"]) {
        Semantic::Postcode
    } else if ["true", "false", "yes", "no"]
        .iter()
        .any(|b| text.eq_ignore_ascii_case(b))
    {
        Semantic::BooleanString
    } else if text.parse::<f64>().is_ok_and(f64::is_finite) && !text.starts_with('+') {
        if named(&["phone", "mobile"]) && digits(text) >= 7 {
            Semantic::Phone
        } else {
            Semantic::NumberString
        }
    } else if text.len() == 2 && is_code(text, COUNTRIES) {
        Semantic::Country
    } else if text.len() == 3 && is_code(text, CURRENCIES) {
        Semantic::Currency
    } else {
        return None;
    };
    Some(semantic)
}

fn digits(text: &str) -> usize {
    text.bytes().filter(u8::is_ascii_digit).count()
}

fn is_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && domain.len() >= 3
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !text.contains(char::is_whitespace)
}

fn is_url(text: &str) -> bool {
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"));
    rest.is_some_and(|r| {
        r.split(['/', '?', '#'])
            .next()
            .is_some_and(|host| !host.is_empty())
            && !r.contains(char::is_whitespace)
    })
}

fn is_date(text: &str) -> bool {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    text.len() == 10 && time::Date::parse(text, format).is_ok()
}

fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// 7–15 digits with a leading `+` or separators (spaces, dashes, dots, brackets) and nothing
/// else: bare digit strings are numbers, unless the property is named a phone.
fn is_phone(text: &str) -> bool {
    let allowed = |c: char| c.is_ascii_digit() || " -.()+".contains(c);
    let count = digits(text);
    let written = text.starts_with('+') || text.contains([' ', '-', '(', '.']);
    text.chars().all(allowed)
        && (7..=15).contains(&count)
        && written
        && text.rfind('+').is_none_or(|at| at == 0)
        && text.parse::<f64>().is_err()
        && !date_shaped(text)
}

/// `dddd-dd-dd` (or with slashes): a date, even a wrong one, not a phone number.
fn date_shaped(text: &str) -> bool {
    let parts: Vec<&str> = text.split(['-', '/']).collect();
    parts.len() == 3
        && parts.iter().map(|p| p.len()).eq([4, 2, 2])
        && parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

/// 13–19 digits (spaces or dashes between groups allowed) that pass the Luhn check.
pub(crate) fn is_card_number(text: &str) -> bool {
    if !text
        .chars()
        .all(|c| c.is_ascii_digit() || c == ' ' || c == '-')
    {
        return false;
    }
    let digits: Vec<u32> = text.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn is_code(text: &str, list: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_uppercase()) && list.split(' ').any(|code| code == text)
}

/// ISO 3166-1 alpha-2 codes.
const COUNTRIES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI \
BJ BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ \
DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ \
GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN \
KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS \
MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT \
PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF \
TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM \
ZW";

/// ISO 4217 codes of currencies in use.
const CURRENCIES: &str = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD \
BND BOB BRL BSD BTN BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN \
ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD \
JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU \
MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB \
RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS \
UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XOF XPF YER ZAR ZMW ZWL";

/// Personal data inside a longer text (`call me at jane@mail.example`): an email address or a
/// card number among its words.
pub(crate) fn pii_inside(text: &str) -> Option<PiiKind> {
    if text.contains('@') {
        let separators = |c: char| c.is_whitespace() || ",;:<>()[]\"'".contains(c);
        if text.split(separators).any(is_email) {
            return Some(PiiKind::Email);
        }
    }
    let digits = digits(text);
    if digits >= 13 {
        // Runs of digits, spaces and dashes: a card number written inside a sentence.
        let runs = text.split(|c: char| !(c.is_ascii_digit() || c == ' ' || c == '-'));
        if runs.map(str::trim).any(is_card_number) {
            return Some(PiiKind::CardNumber);
        }
    }
    None
}

/// A value shown in the map with personal data masked: an email keeps its first letter and its
/// domain (`j***@example.com`), a phone or card number its last four digits, any other
/// personal value its first letter.
pub fn mask(text: &str, kind: PiiKind) -> String {
    match kind {
        PiiKind::Email => match text.split_once('@') {
            Some((local, domain)) => {
                format!("{}***@{domain}", local.chars().next().unwrap_or('*'))
            }
            None => "***".to_owned(),
        },
        PiiKind::Phone | PiiKind::CardNumber | PiiKind::GovernmentId => {
            let digits: Vec<char> = text.chars().filter(char::is_ascii_digit).collect();
            let tail: String = digits
                .get(digits.len().saturating_sub(4)..)
                .unwrap_or_default()
                .iter()
                .collect();
            if digits.len() > 6 {
                format!("***{tail}")
            } else {
                "***".to_owned()
            }
        }
        PiiKind::Secret => "***".to_owned(),
        _ => format!("{}***", text.chars().next().unwrap_or('*')),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semantic_types_of_real_looking_values() {
        let of = |path: &str, text: &str| semantic_of_text(path, text);
        assert_eq!(
            of("properties.x", "jane.doe+shop@mail.example.com"),
            Some(Semantic::Email)
        );
        assert_eq!(of("properties.x", "not an @email"), None);
        assert_eq!(
            of("properties.x", "+44 20 7946 0958"),
            Some(Semantic::Phone)
        );
        assert_eq!(of("properties.x", "(415) 555-0132"), Some(Semantic::Phone));
        assert_eq!(
            of("properties.x", "4155550132"),
            Some(Semantic::NumberString)
        );
        assert_eq!(of("traits.phone", "4155550132"), Some(Semantic::Phone));
        assert_eq!(
            of("properties.x", "https://shop.example/p/1?x=2"),
            Some(Semantic::Url)
        );
        assert_eq!(of("properties.x", "https:// nope"), None);
        assert_eq!(
            of("properties.x", "2024-05-01T10:00:00.000Z"),
            Some(Semantic::DateTime)
        );
        assert_eq!(of("properties.x", "2024-05-01"), Some(Semantic::Date));
        assert_eq!(of("properties.x", "2024-13-01"), None);
        assert_eq!(
            of("properties.x", "9b2c1f0e-8d3a-4c1b-9f2e-1a2b3c4d5e6f"),
            Some(Semantic::Uuid)
        );
        assert_eq!(of("properties.x", "203.0.113.7"), Some(Semantic::Ip));
        assert_eq!(of("properties.x", "2001:db8::1"), Some(Semantic::Ip));
        assert_eq!(
            of("properties.x", "4111 1111 1111 1111"),
            Some(Semantic::CardNumber)
        );
        // One digit off: not a card (Luhn), and too long for a phone.
        assert_eq!(of("properties.x", "4111 1111 1111 1112"), None);
        assert_eq!(of("properties.country", "DE"), Some(Semantic::Country));
        assert_eq!(of("properties.x", "XX"), None);
        assert_eq!(of("properties.currency", "EUR"), Some(Semantic::Currency));
        assert_eq!(of("properties.x", "eur"), None);
        assert_eq!(
            of("traits.address.postalCode", "SW1A 1AA"),
            Some(Semantic::Postcode)
        );
        assert_eq!(of("properties.x", "TRUE"), Some(Semantic::BooleanString));
        assert_eq!(of("properties.x", "12.50"), Some(Semantic::NumberString));
        assert_eq!(of("properties.x", "Blue"), None);
    }

    #[test]
    fn pii_from_names_and_masks() {
        assert_eq!(pii_of_name("traits.email"), Some(PiiKind::Email));
        assert_eq!(pii_of_name("properties.emailAddress"), Some(PiiKind::Email));
        assert_eq!(pii_of_name("traits.phone_number"), Some(PiiKind::Phone));
        assert_eq!(pii_of_name("traits.firstName"), Some(PiiKind::Name));
        assert_eq!(pii_of_name("traits.name"), Some(PiiKind::Name));
        assert_eq!(pii_of_name("properties.name"), None);
        assert_eq!(pii_of_name("traits.address.street"), Some(PiiKind::Address));
        assert_eq!(
            pii_of_name("properties.card_number"),
            Some(PiiKind::CardNumber)
        );
        assert_eq!(pii_of_name("traits.SSN"), Some(PiiKind::GovernmentId));
        assert_eq!(pii_of_name("properties.password"), Some(PiiKind::Secret));
        assert_eq!(pii_of_name("traits.birthday"), Some(PiiKind::BirthDate));
        assert_eq!(pii_of_name("properties.revenue"), None);
        assert_eq!(pii_of_name("properties.zipcode"), Some(PiiKind::Address));
        assert_eq!(pii_of_name("properties.zip_code"), Some(PiiKind::Address));
        assert_eq!(pii_of_name("properties.unzipped"), None);
        assert_eq!(PiiKind::CardNumber.class(), PiiClass::Red);
        assert_eq!(PiiKind::Email.class(), PiiClass::Yellow);
        assert_eq!(
            mask("jane.doe@mail.example", PiiKind::Email),
            "j***@mail.example"
        );
        assert_eq!(mask("+44 20 7946 0958", PiiKind::Phone), "***0958");
        assert_eq!(mask("4111 1111 1111 1111", PiiKind::CardNumber), "***1111");
        assert_eq!(mask("Jane", PiiKind::Name), "J***");
        assert_eq!(mask("hunter2", PiiKind::Secret), "***");
        assert_eq!(words("firstName"), ["first", "name"]);
        assert_eq!(words("First Name"), ["first", "name"]);
        assert_eq!(words("order_id"), ["order", "id"]);
    }
}
