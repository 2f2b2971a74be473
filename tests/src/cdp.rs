//! A generator of the records a customer data platform really holds, for `braid resolve`'s
//! tests and `scripts/bench-resolve.sh`: sparse rows from several sources about people with
//! Zipf-distributed names, households that share a landline, a family mailbox or a tablet, and
//! noise (typos, nicknames, swapped names, dropped fields, a person's other email or phone).
//!
//! The shape (its numbers are the model of such data):
//! - a person has a first and last name (Zipf over a head of common names and a long tail),
//!   1–2 emails made from the name, 1–2 phones, one address, 1–3 device ids, the first of each
//!   their usual one (on 80 % of records, any of them on the rest);
//! - 20 % of people live in a two-person household: same address and last name; the landline
//!   is shared in 60 % of them, a family mailbox in 10 %, a tablet in 10 %;
//! - a person appears as 1–10 records (mean about 2.5), each from one source with its own
//!   coverage: web (device, sometimes email), app (device, email, first name, sometimes last
//!   name), crm (names, email, phone, full address), pos (names, phone, postcode), support
//!   (names, email, sometimes phone);
//! - noise: typos in names and streets (8 %), in email local parts and phone digits (3 %),
//!   nicknames (5 %), first and last name swapped (1 %), 10 % of fields dropped.
//!
//! Columns: `record_id,source,first_name,last_name,email,phone,device_id,street,city,postcode,
//! person` (the truth). Deterministic for a seed.

use std::collections::HashSet;
use std::fmt::Write as _;

/// splitmix64: small, fast and good enough for test data.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from((u128::from(self.next()) * n as u128) >> 64).unwrap_or(0)
    }
    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        #[allow(clippy::cast_precision_loss, reason = "53 random bits")]
        let x = (self.next() >> 11) as f64 / (1_u64 << 53) as f64;
        x < p
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    /// The first of a person's values (their usual one) four times in five, else any.
    fn usual<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        if self.chance(0.8) {
            &items[0]
        } else {
            self.pick(items)
        }
    }
}

/// A Zipf–Mandelbrot distribution over ranks `0..n`: weight 1 / (rank + offset), so the most
/// common name is a few percent of people (as "smith" or "james" are), drawn by binary search
/// in its cumulative weights.
struct Zipf(Vec<f64>);

impl Zipf {
    fn new(n: usize, offset: usize) -> Zipf {
        let mut total = 0.0;
        #[allow(clippy::cast_precision_loss, reason = "ranks are small")]
        let cumulative = (1..=n)
            .map(|rank| {
                total += 1.0 / (rank + offset) as f64;
                total
            })
            .collect();
        Zipf(cumulative)
    }
    fn draw(&self, random: &mut Random) -> usize {
        let total = self.0.last().copied().unwrap_or(1.0);
        #[allow(clippy::cast_precision_loss, reason = "53 random bits")]
        let x = (random.next() >> 11) as f64 / (1_u64 << 53) as f64 * total;
        self.0.partition_point(|&c| c < x).min(self.0.len() - 1)
    }
}

const FIRST_HEAD: &[&str] = &[
    "james",
    "mary",
    "john",
    "patricia",
    "robert",
    "jennifer",
    "michael",
    "linda",
    "william",
    "elizabeth",
    "david",
    "barbara",
    "richard",
    "susan",
    "joseph",
    "jessica",
    "thomas",
    "sarah",
    "charles",
    "karen",
    "christopher",
    "nancy",
    "daniel",
    "lisa",
    "matthew",
    "margaret",
    "anthony",
    "betty",
    "mark",
    "sandra",
    "steven",
    "ashley",
    "andrew",
    "dorothy",
    "kenneth",
    "kimberly",
    "joshua",
    "emily",
    "kevin",
    "donna",
    "brian",
    "michelle",
    "george",
    "carol",
    "edward",
    "amanda",
    "ronald",
    "melissa",
    "timothy",
    "deborah",
    "katherine",
    "rebecca",
    "nicholas",
    "samantha",
    "alexander",
    "victoria",
    "benjamin",
    "catherine",
    "jonathan",
    "maria",
];
const LAST_HEAD: &[&str] = &[
    "smith",
    "johnson",
    "williams",
    "brown",
    "jones",
    "garcia",
    "miller",
    "davis",
    "rodriguez",
    "martinez",
    "hernandez",
    "lopez",
    "gonzalez",
    "wilson",
    "anderson",
    "thomas",
    "taylor",
    "moore",
    "jackson",
    "martin",
    "lee",
    "perez",
    "thompson",
    "white",
    "harris",
    "sanchez",
    "clark",
    "ramirez",
    "lewis",
    "robinson",
    "walker",
    "young",
    "allen",
    "king",
    "wright",
    "scott",
    "torres",
    "nguyen",
    "hill",
    "flores",
    "green",
    "adams",
    "nelson",
    "baker",
    "hall",
    "rivera",
    "campbell",
    "mitchell",
    "carter",
    "roberts",
];
/// The nicknames people give instead of their name (a few common English ones).
const NICKNAMES: &[(&str, &str)] = &[
    ("james", "jim"),
    ("john", "jack"),
    ("robert", "bob"),
    ("michael", "mike"),
    ("william", "bill"),
    ("elizabeth", "liz"),
    ("david", "dave"),
    ("richard", "rick"),
    ("joseph", "joe"),
    ("thomas", "tom"),
    ("charles", "charlie"),
    ("christopher", "chris"),
    ("daniel", "dan"),
    ("matthew", "matt"),
    ("margaret", "peggy"),
    ("anthony", "tony"),
    ("steven", "steve"),
    ("andrew", "andy"),
    ("kenneth", "ken"),
    ("kimberly", "kim"),
    ("joshua", "josh"),
    ("edward", "ted"),
    ("timothy", "tim"),
    ("katherine", "kate"),
    ("rebecca", "becky"),
    ("nicholas", "nick"),
    ("samantha", "sam"),
    ("alexander", "alex"),
    ("victoria", "vicky"),
    ("benjamin", "ben"),
    ("jonathan", "jon"),
    ("patricia", "patty"),
    ("jennifer", "jen"),
    ("deborah", "debbie"),
];
const SYLLABLES: &[&str] = &[
    "ka", "lo", "mi", "ra", "ten", "vo", "shi", "an", "el", "dor", "bre", "za", "qui", "nor", "pa",
    "li", "gro", "us", "ber", "ta", "ven", "ko", "sa", "mar", "del", "fi", "wen", "ho", "ri", "ga",
    "tor", "ly", "ja", "ne", "cas", "dre", "bo", "vik", "ul", "em",
];
const STREETS: &[&str] = &[
    "main",
    "oak",
    "pine",
    "maple",
    "cedar",
    "elm",
    "washington",
    "lake",
    "hill",
    "park",
    "river",
    "church",
    "high",
    "mill",
    "station",
    "victoria",
    "north",
    "south",
    "spring",
    "meadow",
    "forest",
    "king",
    "queen",
    "bridge",
    "garden",
    "chestnut",
    "willow",
    "sunset",
    "highland",
    "walnut",
];
const STREET_TYPES: &[&str] = &["street", "road", "avenue", "lane", "drive", "way", "court"];
const DOMAINS: &[&str] = &[
    "gmail.com",
    "yahoo.com",
    "outlook.com",
    "hotmail.com",
    "icloud.com",
    "proton.me",
    "aol.com",
];

/// A name from the head or, past it, made of syllables (a long tail of distinct names).
fn name(head: &[&str], rank: usize) -> String {
    if let Some(name) = head.get(rank) {
        return (*name).to_owned();
    }
    let mut n = rank - head.len();
    let mut out = String::new();
    for _ in 0..3 {
        out.push_str(SYLLABLES[n % SYLLABLES.len()]);
        n /= SYLLABLES.len();
        if n == 0 && out.len() > 3 {
            break;
        }
    }
    out
}

struct Person {
    first: String,
    last: String,
    emails: Vec<String>,
    phones: Vec<String>,
    devices: Vec<String>,
    street: String,
    city: String,
    postcode: String,
}

fn digits(random: &mut Random, n: usize) -> String {
    (0..n)
        .map(|i| {
            let d = random.below(10);
            char::from(b'0' + u8::try_from(if i == 0 { 2 + d % 8 } else { d }).unwrap_or(0))
        })
        .collect()
}

fn device(random: &mut Random) -> String {
    format!("{:016x}{:016x}", random.next(), random.next())
}

/// A unique email made from the name (the address a provider hands out is unique: a taken one
/// gets a number).
fn email(random: &mut Random, first: &str, last: &str, taken: &mut HashSet<String>) -> String {
    let local = match random.below(5) {
        0 => format!("{first}.{last}"),
        1 => format!("{first}{last}"),
        2 => format!("{}.{last}", &first[..1]),
        3 => format!("{first}_{last}"),
        _ => format!("{first}{}", random.below(100)),
    };
    let domain = random.pick(DOMAINS);
    let mut candidate = format!("{local}@{domain}");
    while taken.contains(&candidate) {
        candidate = format!("{local}{}@{domain}", random.below(10_000));
    }
    taken.insert(candidate.clone());
    candidate
}

/// One typo: a character substituted, deleted, doubled, or two swapped.
fn typo(random: &mut Random, value: &str) -> String {
    let mut chars: Vec<char> = value.chars().collect();
    if chars.len() < 3 {
        return value.to_owned();
    }
    let at = 1 + random.below(chars.len() - 2);
    match random.below(4) {
        0 => chars[at] = char::from(b'a' + u8::try_from(random.below(26)).unwrap_or(0)),
        1 => {
            chars.remove(at);
        }
        2 => chars.insert(at, chars[at]),
        _ => chars.swap(at, at + 1),
    }
    chars.into_iter().collect()
}

/// A phone written as people write it: with separators, sometimes the country code.
fn written_phone(random: &mut Random, phone: &str) -> String {
    let (a, b, c) = (&phone[..3], &phone[3..6], &phone[6..]);
    match random.below(4) {
        0 => format!("({a}) {b}-{c}"),
        1 => format!("{a}-{b}-{c}"),
        2 => format!("+1 {a} {b} {c}"),
        _ => phone.to_owned(),
    }
}

/// A capitalised name, as forms write it (the resolver lowercases).
fn written_name(random: &mut Random, name: &str) -> String {
    if random.chance(0.5) {
        let mut chars = name.chars();
        chars.next().map_or_else(String::new, |c| {
            c.to_uppercase().chain(chars).collect::<String>()
        })
    } else {
        name.to_owned()
    }
}

/// `records` rows (about `records / 2.5` people) as CSV with a header row.
#[must_use]
#[allow(clippy::too_many_lines, reason = "one recipe, read top to bottom")]
pub fn records(records: usize, seed: u64) -> String {
    let mut random = Random(seed ^ 0x00c0_ffee);
    let first_names = Zipf::new(5_000, 5);
    let last_names = Zipf::new(30_000, 10);
    let mut taken = HashSet::new();
    let mut out = String::from(
        "record_id,source,first_name,last_name,email,phone,device_id,street,city,postcode,person\n",
    );
    let mut written = 0;
    let mut person_no = 0;
    // The second member of a household, waiting to be drawn: the first member's last name and
    // address, and what the two share.
    let mut household: Option<Person> = None;
    while written < records {
        let first = name(FIRST_HEAD, first_names.draw(&mut random));
        let person = if let Some(shared) = household.take() {
            let mut emails = shared.emails;
            emails.push(email(&mut random, &first, &shared.last, &mut taken));
            let mut phones = shared.phones;
            phones.push(digits(&mut random, 10));
            let mut devices = shared.devices;
            devices.push(device(&mut random));
            Person {
                first,
                emails,
                phones,
                devices,
                ..shared
            }
        } else {
            let last = name(LAST_HEAD, last_names.draw(&mut random));
            let mut emails: Vec<String> = (0..=random.below(2))
                .map(|_| email(&mut random, &first, &last, &mut taken))
                .collect();
            let phones: Vec<String> = (0..=random.below(2))
                .map(|_| digits(&mut random, 10))
                .collect();
            let mut devices: Vec<String> =
                (0..=random.below(3)).map(|_| device(&mut random)).collect();
            let postcode = digits(&mut random, 5);
            let street = format!(
                "{} {} {}",
                1 + random.below(300),
                random.pick(STREETS),
                random.pick(STREET_TYPES)
            );
            let city = name(&[], 7_000 + postcode[..3].parse::<usize>().unwrap_or(0));
            // 1 in 9 starts a household with the next person drawn: 2/10 of people live in one.
            if random.chance(1.0 / 9.0) {
                let mut shared = Person {
                    first: String::new(),
                    last: last.clone(),
                    emails: Vec::new(),
                    phones: Vec::new(),
                    devices: Vec::new(),
                    street: street.clone(),
                    city: city.clone(),
                    postcode: postcode.clone(),
                };
                if random.chance(0.6) {
                    shared.phones.push(phones[0].clone());
                }
                if random.chance(0.1) {
                    let mailbox = email(&mut random, &last, "family", &mut taken);
                    emails.push(mailbox.clone());
                    shared.emails.push(mailbox);
                }
                if random.chance(0.1) {
                    let tablet = device(&mut random);
                    devices.push(tablet.clone());
                    shared.devices.push(tablet);
                }
                household = Some(shared);
            }
            Person {
                first,
                last,
                emails,
                phones,
                devices,
                street,
                city,
                postcode,
            }
        };
        person_no += 1;
        // Records per person: 1–10, geometric (mean about 2.5).
        let mut count = 1;
        while count < 10 && random.chance(0.6) {
            count += 1;
        }
        for _ in 0..count {
            if written >= records {
                break;
            }
            written += 1;
            let source = *random.pick(&[
                "web", "web", "web", "app", "app", "crm", "crm", "pos", "support", "support",
            ]);
            let (mut first, mut last) = (person.first.clone(), person.last.clone());
            if random.chance(0.05)
                && let Some((_, nick)) = NICKNAMES.iter().find(|(full, _)| *full == first)
            {
                first = (*nick).to_owned();
            }
            if random.chance(0.08) {
                first = typo(&mut random, &first);
            }
            if random.chance(0.08) {
                last = typo(&mut random, &last);
            }
            if random.chance(0.01) {
                std::mem::swap(&mut first, &mut last);
            }
            let mut email = random.usual(&person.emails).clone();
            if random.chance(0.03)
                && let Some((local, domain)) = email.split_once('@')
            {
                email = format!("{}@{domain}", typo(&mut random, local));
            }
            let mut phone = random.usual(&person.phones).clone();
            if random.chance(0.03) {
                let at = random.below(phone.len());
                let digit = char::from(b'0' + u8::try_from(random.below(10)).unwrap_or(0));
                phone.replace_range(at..=at, &digit.to_string());
            }
            let phone = written_phone(&mut random, &phone);
            let mut street = person.street.clone();
            if random.chance(0.08) {
                street = typo(&mut random, &street);
            }
            let device = random.usual(&person.devices).clone();
            // Which fields this source has.
            let has = match source {
                "web" => [
                    false,
                    false,
                    random.chance(0.3),
                    false,
                    true,
                    false,
                    false,
                    false,
                ],
                "app" => [
                    true,
                    random.chance(0.5),
                    true,
                    false,
                    true,
                    false,
                    false,
                    false,
                ],
                "crm" => [true, true, true, true, false, true, true, true],
                "pos" => [true, true, false, true, false, false, false, true],
                _ => [
                    true,
                    true,
                    true,
                    random.chance(0.4),
                    false,
                    false,
                    false,
                    false,
                ],
            };
            let values = [
                written_name(&mut random, &first),
                written_name(&mut random, &last),
                email,
                phone,
                device,
                street,
                person.city.clone(),
                person.postcode.clone(),
            ];
            // 10 % of fields dropped, but a record keeps at least one.
            let kept: Vec<bool> = has.iter().map(|&h| h && !random.chance(0.1)).collect();
            let keep_one = has
                .iter()
                .position(|&h| h)
                .filter(|_| !kept.contains(&true));
            let _ = write!(out, "r{written},{source}");
            for (at, (value, kept)) in values.iter().zip(kept).enumerate() {
                out.push(',');
                if kept || keep_one == Some(at) {
                    out.push_str(value);
                }
            }
            let _ = writeln!(out, ",p{person_no}");
        }
    }
    out
}
