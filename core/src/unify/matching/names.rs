//! People's names: nicknames folded to one form before comparing (`bob`, `bobby`, `rob` →
//! `robert`), and whether two names can belong to one person — the rule that keeps two members
//! of a household (one address, one surname, one landline) apart.

use super::similarity::{jaro_winkler, within_one_edit};

/// Common English given names and their nicknames: `name: nickname nickname ...`. A nickname
/// shared by several names (`alex`, `sam`, `chris`) folds to the first name listed with it.
const NICKNAMES: &str = "\
abigail: abby abbie gail
alexander: alex alec sandy xander
alexandra: lexi sasha
andrew: andy drew
anthony: tony
barbara: barb barbie babs
benjamin: ben benny benji
catherine: cathy kate katie cat
katherine: kathy kate katie kat kathryn
charles: charlie chuck chas
christopher: chris kit topher
christine: chris chrissy tina
christina: tina chris
daniel: dan danny
david: dave davey
deborah: debbie deb debra
donald: don donnie
dorothy: dot dottie
edward: ed eddie ted ned
elizabeth: liz lizzie beth betty eliza betsy libby
emily: emmy em
frances: fran frankie
francis: frank frankie
frederick: fred freddie
gregory: greg
harold: harry hal
henry: hank harry
jacob: jake
james: jim jimmy jamie
jennifer: jen jenny jenn
jessica: jess jessie
john: jack johnny jon
jonathan: jon jonny
joseph: joe joey
joshua: josh
kenneth: ken kenny
kimberly: kim kimmy
lawrence: larry
leonard: leo len lenny
margaret: maggie meg peggy marge
matthew: matt matty
michael: mike mikey mick
nicholas: nick nicky
patricia: pat patty trish tricia
patrick: pat paddy
peter: pete
rebecca: becky becca
richard: rick rich dick ricky
robert: bob rob bobby robbie bert
ronald: ron ronnie
samantha: sam sammy
samuel: sam sammy
stephen: steve stevie
steven: steve stevie
susan: sue susie suzy
theodore: ted teddy theo
thomas: tom tommy
timothy: tim timmy
victoria: vicky vicki tori
william: bill will billy willy liam
";

/// The one form of a given name: its full name when it is a known nickname.
pub(crate) fn fold_given_name(name: &str) -> &str {
    use std::collections::HashMap;
    use std::sync::OnceLock;
    static TABLE: OnceLock<HashMap<&'static str, &'static str>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = HashMap::new();
        for line in NICKNAMES.lines() {
            let Some((full, nicknames)) = line.split_once(':') else {
                continue;
            };
            for nickname in nicknames.split_whitespace() {
                table.entry(nickname).or_insert(full);
            }
        }
        table
    });
    table.get(name).copied().unwrap_or(name)
}

/// Whether two normalised names may be one person's: equal, or equal with nicknames folded,
/// one typo apart (two in names of six letters or more), close by Jaro–Winkler (≥ 0.88), or
/// one the initial of the other. Empty: no
/// evidence, so yes. (Typos are judged on the names as written: `toni` is one typo from `tony`
/// but not from its folded `anthony`.)
pub(crate) fn compatible(a: &str, b: &str) -> bool {
    if a.is_empty() || b.is_empty() || a == b || fold_given_name(a) == fold_given_name(b) {
        return true;
    }
    let initial = |x: &str, y: &str| x.chars().count() == 1 && y.starts_with(x);
    let long = a.chars().count().min(b.chars().count()) >= 6;
    within_one_edit(a.as_bytes(), b.as_bytes())
        || initial(a, b)
        || initial(b, a)
        || jaro_winkler(a, b) >= 0.88
        || (long && strsim::osa_distance(a, b) <= 2)
}

/// A record's given and family name (normalised, nicknames not folded; either may be empty).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PersonName<'a> {
    pub(crate) given: &'a str,
    pub(crate) family: &'a str,
}

impl PersonName<'_> {
    /// Whether both parts are compatible as written.
    pub(crate) fn compatible_straight(&self, other: &PersonName<'_>) -> bool {
        compatible(self.given, other.given) && compatible(self.family, other.family)
    }

    /// Whether `other` may be this name with first and last swapped: both crosswise pairs
    /// present and close, or the one present equal, and no crosswise pair in conflict.
    pub(crate) fn swapped(&self, other: &PersonName<'_>) -> bool {
        let crosswise = [(self.given, other.family), (self.family, other.given)];
        let present: Vec<&(&str, &str)> = crosswise
            .iter()
            .filter(|(a, b)| !a.is_empty() && !b.is_empty())
            .collect();
        // With one crosswise pair only, it must be equal: a close pair alone (`elten` and
        // `raten`) says nothing of a swap.
        let enough = match present.as_slice() {
            [] => false,
            [(a, b)] => a == b,
            _ => true,
        };
        enough && crosswise.iter().all(|(a, b)| compatible(a, b))
    }
}

/// One part of a name: the given or the family name.
#[derive(Clone, Copy)]
enum Part {
    Given,
    Family,
}

impl Part {
    fn of<'a>(self, name: &PersonName<'a>) -> &'a str {
        match self {
            Part::Given => name.given,
            Part::Family => name.family,
        }
    }

    /// Whether two names agree on this part: compatible as written, or both names swapped.
    fn agree(self, x: &PersonName<'_>, y: &PersonName<'_>) -> bool {
        compatible(self.of(x), self.of(y)) || x.swapped(y)
    }
}

/// Whether names can all be one person's: the names with a given name are one chain of
/// agreeing given names, and those with a family name one chain of agreeing family names.
/// (A name with only the family part cannot bridge `susan smith` and `pami smith`; two typos
/// of one name, `nxra` and `norx`, meet through `nora`.)
pub(crate) fn one_person(names: &[PersonName<'_>]) -> bool {
    let chained = |part: Part| {
        let nodes: Vec<&PersonName<'_>> = names.iter().filter(|n| !part.of(n).is_empty()).collect();
        let mut reached = vec![false; nodes.len()];
        let mut stack = Vec::new();
        if let Some(first) = reached.first_mut() {
            *first = true;
            stack.push(0);
        }
        while let Some(at) = stack.pop() {
            let Some(&name) = nodes.get(at) else { continue };
            for (other, (node, seen)) in nodes.iter().zip(reached.iter_mut()).enumerate() {
                if !*seen && part.agree(name, node) {
                    *seen = true;
                    stack.push(other);
                }
            }
        }
        reached.iter().all(|&r| r)
    };
    chained(Part::Given) && chained(Part::Family)
}

/// The names of `side` with this part, a family name in the given field (beside `others`)
/// left out of the given names.
fn named<'s, 'n>(
    part: Part,
    side: &'s [PersonName<'n>],
    others: &[PersonName<'_>],
) -> Vec<&'s PersonName<'n>> {
    side.iter()
        .filter(|n| !part.of(n).is_empty())
        .filter(|n| {
            !matches!(part, Part::Given)
                || !n.family.is_empty()
                || !others
                    .iter()
                    .any(|o| o.family == n.given && o.given != n.given)
        })
        .collect()
}

/// Whether two sets of names, each one person's, can be the same person's: for the given
/// names and for the family names, one set has none, or some name of one agrees with some
/// name of the other.
///
/// A name with only a given part that is the family name of one of the other set (`riandor`
/// beside `mika riandor`) is taken for a family name in the wrong field: it says nothing of the
/// given name, and cannot bridge `vikus riandor` and `mika riandor`.
pub(crate) fn meet(a: &[PersonName<'_>], b: &[PersonName<'_>]) -> bool {
    let part_meets = |part: Part| {
        let (x, y) = (named(part, a, b), named(part, b, a));
        x.is_empty() || y.is_empty() || x.iter().any(|p| y.iter().any(|q| part.agree(p, q)))
    };
    part_meets(Part::Given) && part_meets(Part::Family)
}

/// A person's usual given name among the given names of some records (nicknames folded,
/// empty ones left out): the one at least two records carry and more than any other. A typo
/// is on one record; a person's own name on most of theirs.
pub(crate) fn usual_given<'a>(given: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let counts = given_counts(given);
    match counts.as_slice() {
        [(name, n), rest @ ..] if *n >= 2 && rest.first().is_none_or(|(_, m)| m < n) => Some(name),
        _ => None,
    }
}

/// Whether the given names of some records are two people's: two names (nicknames folded),
/// each on two records or more. One person's typos are scattered, one per record; a
/// household's two names (`holi` and `homi`, one letter apart) each recur.
pub(crate) fn two_usual_given<'a>(given: impl IntoIterator<Item = &'a str>) -> bool {
    given_counts(given)
        .iter()
        .filter(|&&(name, n)| n >= 2 && name.chars().count() > 1)
        .nth(1)
        .is_some()
}

/// Distinct folded given names with their counts, the most frequent first (ties by name).
fn given_counts<'a>(given: impl IntoIterator<Item = &'a str>) -> Vec<(&'a str, usize)> {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for name in given.into_iter().filter(|n| !n.is_empty()) {
        let name = fold_given_name(name);
        match counts.iter_mut().find(|(n, _)| *n == name) {
            Some((_, count)) => *count += 1,
            None => counts.push((name, 1)),
        }
    }
    counts.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nicknames_fold_and_names_conflict() {
        assert_eq!(fold_given_name("bob"), "robert");
        assert_eq!(fold_given_name("bobby"), "robert");
        assert_eq!(fold_given_name("robert"), "robert");
        assert_eq!(fold_given_name("zbigniew"), "zbigniew");
        // `chris` is listed under christopher first.
        assert_eq!(fold_given_name("chris"), "christopher");
        assert!(compatible("jonathan", "jonathon"));
        assert!(compatible("ana", "anna"));
        assert!(compatible("j", "john"));
        assert!(compatible("bob", "robert"));
        assert!(compatible("tony", "toxy"));
        assert!(compatible("dennis", "dxnnxs"));
        assert!(!compatible("ken", "kxx"));
        assert!(!compatible("elten", "raten"));
        assert!(compatible("", "mary"));
        assert!(!compatible("john", "mary"));
        assert!(!compatible("james", "jane"));
        let name = |given, family| PersonName { given, family };
        assert!(meet(&[name("john", "smith")], &[name("smith", "john")]));
        assert!(meet(&[name("john", "smith")], &[name("john", "")]));
        assert!(meet(&[name("smith", "john")], &[name("john", "")]));
        assert!(!meet(&[name("mary", "smith")], &[name("john", "")]));
        assert!(!meet(&[name("john", "smith")], &[name("mary", "smith")]));
        assert!(!meet(&[name("john", "smith")], &[name("john", "garcia")]));
        // A swap needs both crosswise pairs close, or the one there is equal.
        assert!(!meet(&[name("jakomi", "elten")], &[name("raten", "")]));
        assert!(meet(&[name("emta", "")], &[name("tajaten", "emta")]));
        // Two typos of one given name, two edits apart, meet only through a third record.
        assert!(!one_person(&[
            name("nxra", "jalilo"),
            name("norx", "jalilo")
        ]));
        assert!(one_person(&[
            name("nxra", "jalilo"),
            name("norx", "jalilo"),
            name("nora", "")
        ]));
        assert!(one_person(&[
            name("nxra", "jalilo"),
            name("norx", "jalilo"),
            name("nora", "jalilo")
        ]));
        assert!(!one_person(&[
            name("susan", "smith"),
            name("", "smith"),
            name("pami", "smith")
        ]));
        assert!(one_person(&[
            name("emta", ""),
            name("tajaten", "emta"),
            name("emta", "tajaten")
        ]));
        assert!(one_person(&[]));
        let (susan, pami) = (name("susan", "smith"), name("pami", "smith"));
        assert!(!meet(&[susan, name("", "smith")], &[pami]));
        assert!(meet(
            &[name("nxra", "jalilo")],
            &[name("nora", "jalilo"), name("norx", "")]
        ));
        assert!(meet(
            &[name("lydia", "mccarthy"), name("lydia", "doosey")],
            &[name("lydia", "doosey")]
        ));
        assert!(meet(&[], &[pami]));
        // A family name in the given field says nothing of the given name.
        let (vikus, mika) = (name("vikus", "riandor"), name("mika", "riandor"));
        assert!(!meet(&[vikus, name("riandor", "")], &[mika]));
        assert!(meet(&[name("riandor", "")], &[mika]));
        // Usual names: a typo is on one record, a person's name on most.
        assert_eq!(usual_given(["dremi", "dremi", "drmi"]), Some("dremi"));
        assert_eq!(usual_given(["bob", "robert", "rob"]), Some("robert"));
        assert_eq!(usual_given(["dremi", "drmi"]), None);
        assert_eq!(usual_given(["dremi", "dremi", "drmi", "drmi", ""]), None);
        assert!(two_usual_given(["holi", "holi", "homi", "homi", "homi"]));
        assert!(!two_usual_given(["holi", "holi", "homi", "hloi"]));
        assert!(!two_usual_given(["bill", "will", "william", "willy"]));
        assert!(!two_usual_given(["j", "j", "john", "john"]));
    }
}
